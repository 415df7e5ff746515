"""The pure-torch prior the FFC network refines (models/prior.py)."""

import numpy as np
import pytest
import torch

from fillgap.models.prior import DiffusionPrior


def _case(n=2, h=12, w=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, h, w, generator=g)
    hole = torch.zeros(n, 1, h, w)
    hole[0, :, 3:8, 4:9] = 1
    hole[1:, :, 0:4, 10:14] = 1  # touches the picture's border
    return image, hole


def _reference(image: np.ndarray, hole: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Slow, independent solve: one linear equation per hole pixel, sum_q K[q] u[clamp(p + q)] = 0
    (clamped indices = the replicate padding at the picture's border), known pixels fixed."""
    h, w = hole.shape
    r = kernel.shape[0] // 2
    idx = {p: i for i, p in enumerate(zip(*np.nonzero(hole)))}
    a = np.zeros((len(idx), len(idx)))
    out = image.copy()
    for c in range(image.shape[0]):
        b = np.zeros(len(idx))
        for (y, x), i in idx.items():
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    k = kernel[dy + r, dx + r]
                    if k == 0:
                        continue
                    q = (min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1))
                    if q in idx:
                        a[i, idx[q]] += k if c == 0 else 0.0  # the same matrix for every channel
                    else:
                        b[i] -= k * image[c][q]
        sol = np.linalg.solve(a, b)
        for (y, x), i in idx.items():
            out[c, y, x] = sol[i]
    return out


LAPLACE = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float)
BILAPLACE = np.array([[0, 0, 1, 0, 0], [0, 2, -8, 2, 0], [1, -8, 20, -8, 1], [0, 2, -8, 2, 0], [0, 0, 1, 0, 0]], float)


@pytest.mark.parametrize("kind", ["harmonic", "biharmonic"])
def test_prior_converges_to_the_exact_solution(kind):
    image, hole = _case()
    if kind == "harmonic":
        prior, kernel = DiffusionPrior(fine_sweeps=3000, bi_sweeps=0, fine_bi_sweeps=0), LAPLACE
    else:
        prior, kernel = DiffusionPrior(fine_sweeps=50, fine_bi_sweeps=6000), BILAPLACE
    out = prior(image.double() * (1 - hole.double()), hole.double())
    for i in range(image.shape[0]):
        ref = _reference(image[i].double().numpy(), hole[i, 0].numpy() > 0, kernel)
        assert np.abs(out[i].numpy() - ref).max() < 1e-4


def test_prior_is_batched_deterministic_and_keeps_known_pixels():
    image, hole = _case(n=3)
    prior = DiffusionPrior()
    batch = prior(image * (1 - hole), hole)
    one_by_one = torch.cat([prior(image[i : i + 1] * (1 - hole[i : i + 1]), hole[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, one_by_one, atol=1e-6)
    assert torch.equal(batch, prior(image * (1 - hole), hole))
    assert torch.equal(batch * (1 - hole), image * (1 - hole))
    assert batch.min() >= -0.05 and batch.max() <= 1.05  # a smooth fill stays near the known range


def test_prior_is_differentiable_and_ignores_hidden_pixels():
    image, hole = _case(n=1)
    x = (image * (1 - hole)).requires_grad_(True)
    DiffusionPrior()(x, hole).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # what lies under the hole never reaches the fill
    a = DiffusionPrior()(image * (1 - hole) + hole * 0.9, hole)
    b = DiffusionPrior()(image * (1 - hole), hole)
    assert torch.allclose(a, b)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 9), (64, 48)])
def test_prior_any_size_and_degenerate_masks(shape):
    h, w = shape
    image = torch.rand(1, 3, h, w)
    full = DiffusionPrior()(torch.zeros(1, 3, h, w), torch.ones(1, 1, h, w))
    assert torch.allclose(full, torch.full_like(full, 0.5))  # nothing known: mid grey
    empty = DiffusionPrior()(image, torch.zeros(1, 1, h, w))
    assert torch.equal(empty, image)


def test_prior_flat_picture_stays_flat():
    image = torch.full((1, 3, 40, 40), 0.3)
    hole = torch.zeros(1, 1, 40, 40)
    hole[..., 5:35, 8:30] = 1
    out = DiffusionPrior()(image * (1 - hole), hole)
    assert torch.allclose(out, image, atol=1e-5)


def test_export_form_of_the_sweeps_equals_the_eager_form(monkeypatch):
    """Under ONNX export the stencils are depthwise convolutions (a small graph), in eager torch
    summed slices (fast on a CPU): the same numbers."""
    torch.manual_seed(0)
    x, hole = torch.rand(2, 3, 40, 56), (torch.rand(2, 1, 40, 56) > 0.5).float()
    prior = DiffusionPrior()
    eager = prior(x, hole)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    exported_form = prior(x, hole)
    assert torch.allclose(eager, exported_form, atol=1e-5)
    assert (eager - x).abs().max() > 0.05


def test_small_levels_as_matrix_products_equal_the_slice_sweeps():
    """Levels of at most DENSE_MAX_PIXELS pixels sweep by matrix products: the same fill."""
    g = torch.Generator().manual_seed(4)
    x, hole = torch.rand(2, 3, 40, 56, generator=g), (torch.rand(2, 1, 40, 56, generator=g) > 0.6).float()
    dense, slices = DiffusionPrior(), DiffusionPrior()
    slices.DENSE_MAX_PIXELS = 0
    assert torch.allclose(dense(x * (1 - hole), hole), slices(x * (1 - hole), hole), atol=1e-5)
    # a picture's fill does not depend on its batch-mates (bit for bit, as with the slices)
    assert torch.equal(dense(x[:1] * (1 - hole[:1]), hole[:1]), dense(x * (1 - hole), hole)[:1])
    tiny = torch.rand(1, 3, 12, 9, generator=g), torch.zeros(1, 1, 12, 9)
    tiny[1][..., 3:8, 2:6] = 1  # every level dense, the finest included
    assert torch.allclose(dense(tiny[0] * (1 - tiny[1]), tiny[1]), slices(tiny[0] * (1 - tiny[1]), tiny[1]), atol=1e-5)


def test_prior_runs_in_float32_under_bf16_autocast():
    """The runtime 'auto' wraps the whole network in bf16 autocast; the prior (a solver) must
    not follow it: bf16 matrix-product sweeps cost 0.13 dB hole PSNR on a 1024 px pass."""
    g = torch.Generator().manual_seed(6)
    x, hole = torch.rand(1, 3, 48, 40, generator=g), torch.zeros(1, 1, 48, 40)
    hole[..., 10:38, 8:32] = 1  # large: the coarse levels (the matrix-product sweeps) shape its middle
    prior = DiffusionPrior()
    ref = prior(x * (1 - hole), hole)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = prior(x * (1 - hole), hole)
    assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=1e-6)


def test_tracing_the_prior_leaves_no_fake_tensors_in_its_matrix_cache():
    """torch.compile / torch.export trace with fake tensors: the matrix-product sweeps, whose
    matrices are cached per size, must not run then (a later real call would meet fake matrices)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    x, hole = torch.rand(1, 3, 12, 9), torch.zeros(1, 1, 12, 9)
    hole[..., 3:8, 2:6] = 1
    with FakeTensorMode():
        DiffusionPrior()(torch.rand(1, 3, 12, 9), torch.ones(1, 1, 12, 9))
    assert torch.isfinite(DiffusionPrior()(x * (1 - hole), hole)).all()
