"""fillgap.filters: gaussian_blur, dilate, and remove_excess_checker (a fill's 2 x 2 checkerboard cut back to
its surroundings' level)."""

import pytest
import torch

import math

from fillgap.filters import dilate, gaussian_blur, known_mean, nearest_known_mean, remove_excess_checker
from fillgap.models import create_model
from fillgap.runtime.network import TorchNetwork


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (5, 3), (64, 80), (131, 97)])
def test_dilate_equals_a_square_max_filter(h, w):
    g = torch.Generator().manual_seed(h * w)
    for r in (1, 2, 5, 9, 40):
        mask = torch.rand(h, w, generator=g) > 0.95
        square = torch.nn.functional.max_pool2d(mask[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] > 0
        assert torch.equal(dilate(mask, r), square)


def _reference_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The separable Gaussian written out: taps to 2.5 sigma, borders replicated."""
    r = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    y = torch.nn.functional.pad(x[None].double(), (r, r, r, r), mode="replicate")[0]
    y = sum(k[i] * y[:, :, i : i + x.shape[-1]] for i in range(2 * r + 1))
    return sum(k[i] * y[:, i : i + x.shape[-2]] for i in range(2 * r + 1)).float()


@pytest.mark.parametrize("c,h,w", [(1, 1, 1), (3, 5, 3), (3, 64, 80), (5, 131, 97)])
def test_the_blur_is_a_replicate_padded_gaussian(c, h, w):
    x = torch.rand(c, h, w, generator=torch.Generator().manual_seed(c * h * w))
    for sigma in (0.7, 1.0, 2.0, 3.0):
        out = gaussian_blur(x, sigma)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.allclose(out, _reference_blur(x, sigma), atol=1e-6)
    assert torch.equal(gaussian_blur(x, 2.0), gaussian_blur(x.clone(), 2.0))  # no state between calls
    torch_path = gaussian_blur(x.clone().requires_grad_(), 1.0).detach()  # torch's convolution
    assert torch.allclose(torch_path, gaussian_blur(x, 1.0), atol=1e-6)
    double = gaussian_blur(x.double(), 1.0)
    assert double.dtype == torch.float64 and torch.allclose(double.float(), _reference_blur(x, 1.0), atol=1e-6)
    strided = x.transpose(1, 2)  # not contiguous
    assert torch.allclose(gaussian_blur(strided, 1.0), _reference_blur(strided, 1.0), atol=1e-6)


def test_the_nearest_known_values_reach_every_pixel():
    """Pull-push: every pixel gets the known values nearest to it, however far they are (a
    normalised blur of a fixed width says 0 where it reaches no known pixel), known pixels keep
    their own, and between two known regions the values ramp from one to the other."""
    values = torch.zeros(1, 64, 300)
    values[..., :10] = 0.5
    known = torch.zeros(1, 64, 300)
    known[..., :10] = 1
    assert known_mean(values, known, 2.0, 12.0, 0.5)[..., 250:].max() < 0.01  # too short a reach
    assert (nearest_known_mean(values, known) - 0.5).abs().max() < 1e-5
    values[..., 290:], known[..., 290:] = 0.9, 1
    out = nearest_known_mean(values, known)
    assert torch.equal(out[known > 0], values[known > 0])
    assert ((out[..., 1:] - out[..., :-1]) >= -1e-6).all() and out.min() >= 0.5 - 1e-6 and out.max() <= 0.9 + 1e-6
    assert out[..., 20].mean() < 0.6 and out[..., 280].mean() > 0.8  # each side near its own
    assert torch.isfinite(nearest_known_mean(values, torch.zeros_like(known))).all()


def _sign(h: int, w: int) -> torch.Tensor:
    return ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 * 2 - 1).float()


def _checker_rms(x: torch.Tensor, where: torch.Tensor) -> float:
    """RMS of the 2 x 2 [[1, -1], [-1, 1]] filter over ``where`` (C x H x W picture)."""
    k = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).view(1, 1, 2, 2).expand(x.shape[0], 1, 2, 2)
    r = torch.nn.functional.conv2d(x[None], k, groups=x.shape[0])[0]
    return float(r[:, where[:-1, :-1]].pow(2).mean().sqrt())


def _grey_photo(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    noise = torch.randn(3, size, size, generator=torch.Generator().manual_seed(0)) * 0.01
    hole = torch.zeros(size, size, dtype=torch.bool)
    hole[32:64, 24:72] = True
    return (0.3 + noise).clamp(0, 1), hole


def test_a_fill_s_checkerboard_is_cut_back_and_the_known_pixels_stay():
    photo, hole = _grey_photo()
    filled = torch.where(hole, 0.3 + 0.04 * _sign(*hole.shape), photo)
    inner = torch.zeros_like(hole)
    inner[36:60, 28:68] = True
    before, truth = _checker_rms(filled, inner), _checker_rms(photo, inner)
    out = remove_excess_checker(filled, hole)
    assert before > 3 * truth
    assert _checker_rms(out, inner) < 1.5 * truth  # the photo's own level, not the fill's
    assert torch.equal(out[:, ~hole], filled[:, ~hole])
    assert (out[:, inner].mean() - 0.3).abs() < 0.005  # the fill's shade stays


def test_a_hole_at_the_picture_s_edge_gets_no_checker():
    """A flat fill in a corner: the border is no reason for a pattern (the amplitude is measured
    with the checker continued past the edge, not stopped there)."""
    photo, _ = _grey_photo()
    hole = torch.zeros(96, 96, dtype=torch.bool)
    hole[64:, 60:] = True
    filled = torch.where(hole, torch.full_like(photo, 0.6), photo)
    out = remove_excess_checker(filled, hole)
    assert (out - filled).abs().max() < 0.01


def test_a_checkered_texture_of_the_photo_is_kept():
    """A fine weave that really alternates pixel by pixel: the hole may carry it too."""
    photo, hole = _grey_photo()
    weave = (photo + 0.04 * _sign(*hole.shape)).clamp(0, 1)
    out = remove_excess_checker(weave, hole)
    assert _checker_rms(out, hole) > 0.9 * _checker_rms(weave, hole)


def test_the_network_runtime_removes_its_checkerboard_unless_told_not_to():
    torch.manual_seed(0)
    model = create_model("ffc-tiny", refine=False).eval()
    photo, hole = _grey_photo(64)
    hole = torch.zeros(64, 64, dtype=torch.bool)
    hole[16:48, 16:48] = True
    checkered = lambda x, m: 0.3 + 0.04 * _sign(*x.shape[-2:]).expand_as(x)  # noqa: E731
    inner = torch.zeros_like(hole)
    inner[20:44, 20:44] = True
    rms = {}
    for remove in (True, False):
        net = TorchNetwork(model, remove_checker=remove)
        net._forward = checkered
        rms[remove] = _checker_rms(net.fill(photo[None], hole[None, None].float())[0], inner)
    assert rms[False] > 0.07  # the network's pattern, as it came
    assert rms[True] < rms[False] / 3
