"""The texture stage: exemplar synthesis from the picture's own patches (fillgap.texture)."""

import numpy as np
import pytest
import torch

from fillgap import inpaint
from fillgap.methods import TexturedMethod, get_method, method_names
from fillgap.texture import TextureSettings, _continue_lines, _quantile, guide_scale, synthesize


def _tiled(size: int = 96, period: int = 12, seed: int = 0) -> torch.Tensor:
    """1 x 3 x size x size: a random colour tile repeated, a texture with an exact answer."""
    g = torch.Generator().manual_seed(seed)
    tile = torch.rand(3, period, period, generator=g)
    reps = size // period + 1
    return tile.repeat(1, reps, reps)[None, :, :size, :size].contiguous()


def _box(size: int, top: int, side: int) -> torch.Tensor:
    hole = torch.zeros(1, 1, size, size)
    hole[..., top : top + side, top : top + side] = 1
    return hole


def test_repeated_texture_is_continued_not_smeared():
    picture, hole = _tiled(), _box(96, 36, 24)
    mean = picture.mean(dim=(2, 3), keepdim=True).expand_as(picture)  # a guide with no texture at all
    inside = hole.bool().expand_as(picture)
    smear = (mean - picture)[inside].abs().mean()
    # patches alone (no layout to follow) rebuild the repeated tile almost exactly
    out = synthesize(picture * (1 - hole), hole, mean, TextureSettings(guide_weight=0, coarse_min_side=24))
    assert (out - picture)[inside].abs().mean() < 0.1 * smear
    # with a guide that says "flat", the default still continues the texture, not the guide
    out = synthesize(picture * (1 - hole), hole, mean)
    assert (out - picture)[inside].abs().mean() < 0.6 * smear
    assert out[inside].std() > 0.8 * picture[inside].std()  # fine detail there, not averaged away


def test_quiet_surroundings_calm_the_copies_and_textures_keep_theirs():
    """By default (calm_high > calm_low): where the known pixels nearest to the hole have (almost) nothing
    between the 1 and 8 px scales (a defocused background), the copies are blurred by up to
    8 px; a texture with detail at those scales keeps its copies exactly."""
    from fillgap.filters import gaussian_blur, luma_of

    g = torch.Generator().manual_seed(1)
    blobs = gaussian_blur(gaussian_blur(torch.rand(3, 160, 160, generator=g), 4.0), 4.0)
    defocused = (blobs - blobs.mean()) / blobs.std() * 0.02 + 0.5 + 0.002 * torch.randn(3, 160, 160, generator=g)
    defocused = defocused.clamp(0, 1)[None]
    hole = _box(160, 50, 60)

    def mid_band(x: torch.Tensor) -> float:
        grey = luma_of(x[0])
        return float((gaussian_blur(grey, 1.0) - gaussian_blur(grey, 4.0))[0, 56:104, 56:104].abs().mean())

    flat = torch.full_like(defocused, 0.5)
    plain = synthesize(defocused * (1 - hole), hole, flat, TextureSettings(calm_high=0.0))
    calm = synthesize(defocused * (1 - hole), hole, flat)
    assert mid_band(calm) < 0.5 * mid_band(plain)
    keep = ~hole.bool().expand_as(defocused)
    assert torch.equal(calm[keep], defocused[keep])
    white = torch.where(hole.bool(), 1.0, defocused)
    assert torch.equal(calm, synthesize(white, hole, flat))  # what the hole holds plays no part
    tiled, box = _tiled(96, 12, seed=2), _box(96, 30, 30)
    same = synthesize(tiled * (1 - box), box, torch.full_like(tiled, 0.5))
    assert torch.equal(
        same, synthesize(tiled * (1 - box), box, torch.full_like(tiled, 0.5), TextureSettings(calm_high=0))
    )


def test_no_calm_without_surroundings_to_measure():
    """A hole so large that every known pixel is within a band's reach of it: nothing says the
    surroundings are quiet, so the copies are not calmed."""
    picture, hole = _tiled(64, 8, seed=4), _box(64, 12, 40)
    flat = torch.full_like(picture, 0.5)
    assert torch.equal(synthesize(picture, hole, flat), synthesize(picture, hole, flat, TextureSettings(calm_high=0)))


def test_known_pixels_kept_range_and_determinism():
    picture, hole = _tiled(64, 8, seed=3), _box(64, 20, 20)
    guide = torch.full_like(picture, 0.5)
    out = synthesize(picture, hole, guide)
    keep = ~hole.bool().expand_as(picture)
    assert torch.equal(out[keep], picture[keep])
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, synthesize(picture, hole, guide))
    assert not torch.equal(out, synthesize(picture, hole, guide, TextureSettings(seed=1)))


def test_nothing_is_copied_from_under_the_hole():
    """What the hole covers (here the true tile, or black) makes no difference to the fill."""
    picture, hole = _tiled(64, 8, seed=5), _box(64, 16, 24)
    guide = torch.full_like(picture, 0.5)
    black = picture * (1 - hole)
    assert torch.equal(synthesize(picture, hole, guide), synthesize(black, hole, guide))


def test_smooth_surroundings_get_the_copies_blurred():
    """A flat picture has no texture to give: the fill is its copies blurred, so it takes the
    known region's colour, not a colour the guide made up, and shows no seams."""
    picture = torch.full((1, 3, 48, 48), 0.4)
    hole = _box(48, 16, 16)
    guide = picture.clone()
    guide[..., 16:32, 16:32] = 0.6
    out = synthesize(picture, hole, guide)
    assert (out[..., 16:32, 16:32] - 0.4).abs().max() < 0.02


def _line_picture(size: int = 96) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A dark diagonal line 3 px wide on a light, slightly noisy background; a box hole over its
    middle; how far each pixel is from the line."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    distance = (y - 0.6 * x - 20).abs() / 1.36**0.5
    picture = (0.8 - 0.5 * (distance < 1.6).float())[None].expand(3, size, size) + 0.01 * torch.randn(
        3, size, size, generator=g
    )
    hole = torch.zeros(size, size, dtype=torch.bool)
    hole[30:66, 30:66] = True
    return picture, hole, distance


def test_lines_of_the_surroundings_continue_across_the_hole():
    """A guide that knows nothing of the line (flat): copies alone leave the hole flat, the line
    stops at the rim; continued into the guide, it crosses the hole. What the hole holds (the
    removed object, here white or black) makes no difference."""
    picture, hole, distance = _line_picture()
    guide = torch.where(hole, torch.tensor(0.78), picture)
    on_line, off_line = hole & (distance < 1.0), hole & (distance > 4)
    white = torch.where(hole, torch.tensor(1.0), picture)[None]
    fills = {
        weight: synthesize(white, hole[None, None].float(), guide[None], TextureSettings(line_weight=weight))[0]
        for weight in (0.0, 1.0)
    }
    black = torch.where(hole, torch.tensor(0.0), picture)[None]
    assert torch.equal(fills[1.0], synthesize(black, hole[None, None].float(), guide[None])[0])
    assert float(fills[0.0][:, on_line].mean()) > 0.75  # stopped: background where the line was
    assert float(fills[1.0][:, on_line].mean()) < 0.6  # continued: dark
    assert float(fills[1.0][:, off_line].mean()) > 0.7  # and the background stays background


def test_lines_leave_textures_without_an_orientation_alone():
    picture = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(1))
    _, hole, _ = _line_picture()
    guide = torch.full_like(picture, 0.5)
    out = _continue_lines(picture, hole, hole, guide, TextureSettings(line_weight=1.0))
    assert torch.equal(out, guide)


def test_batch_equals_one_by_one_and_degenerate_inputs():
    a, b = _tiled(48, 8, seed=1), _tiled(48, 6, seed=2)
    hole = torch.cat([_box(48, 10, 12), _box(48, 20, 16)])
    guide = torch.full((2, 3, 48, 48), 0.5)
    both = synthesize(torch.cat([a, b]), hole, guide)
    assert torch.equal(both[1:], synthesize(b, hole[1:], guide[1:]))
    # too small for a patch, or nothing known: the guide where the hole is
    tiny, tiny_hole = _tiled(4, 2), torch.ones(1, 1, 4, 4)
    assert torch.equal(synthesize(tiny, tiny_hole, torch.zeros_like(tiny)), torch.zeros_like(tiny))
    small = _tiled(5, 2)
    small_hole = torch.zeros(1, 1, 5, 5)
    small_hole[..., 2, 2] = 1
    out = synthesize(small, small_hole, torch.zeros_like(small))
    assert out.shape == small.shape and torch.isfinite(out).all()


def test_textured_method_through_the_pipeline():
    assert "fillgap-texture" in method_names()
    method = get_method("fillgap-texture")
    assert isinstance(method, TexturedMethod) and method.base.name == "fillgap-network"
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    image = np.tile(tile, (12, 16, 1))
    mask = np.zeros(image.shape[:2], bool)
    mask[40:75, 50:90] = True
    out = inpaint(image, mask, "fillgap-texture")
    assert np.array_equal(out[~mask], image[~mask])
    err = np.abs(out[mask].astype(int) - image[mask]).mean()
    net = np.abs(inpaint(image, mask, "fillgap-network")[mask].astype(int) - image[mask]).mean()
    assert err < net, (err, net)


@pytest.mark.parametrize("strategy", ["crop", "cra"])
def test_textured_method_any_window_size(strategy):
    rng = np.random.default_rng(1)
    image = np.tile(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8), (20, 30, 1))
    mask = np.zeros(image.shape[:2], bool)
    mask[60:110, 100:170] = True
    out = inpaint(image, mask, "fillgap-texture", strategy=strategy, max_side=128)
    assert out.shape == image.shape and np.array_equal(out[~mask], image[~mask])


def test_textured_method_keeps_its_base_limits():
    """Windows beyond the network's 1024 px go through cra, thin holes through tiles, as the
    network alone would (copying at full size cost 6 s and 1.8 GB on a 12 MP picture)."""
    method = get_method("fillgap-texture")
    assert (method.max_side, method.fixed_size) == (method.base.max_side, method.base.fixed_size)


def test_evaluate_knows_the_textured_method():
    from fillgap.eval import build_methods, peer_names

    assert "fillgap-texture" in peer_names()
    assert [m.name for m in build_methods(["fillgap-texture"])] == ["fillgap-texture"]


def test_thin_holes_keep_the_guide():
    """Strokes a few pixels wide: the network's fill is better there than any copy (2.4 dB)."""
    picture = _tiled(64, 8, seed=6)
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 30:34, 4:60] = 1  # a 4 px line
    guide = torch.rand(picture.shape, generator=torch.Generator().manual_seed(0))
    out = synthesize(picture, hole, guide)
    inside = hole.bool().expand_as(out)
    assert torch.equal(out[inside], guide[inside])


def test_wide_holes_get_their_guide_at_the_network_s_training_scale():
    """A hole 200 px wide is filled by the network where it is about 2 x 32 px wide (it trained on
    128-192 px crops), a thin one at native size; the guide comes back at the window's size."""
    hole = torch.zeros(1, 1, 512, 512)
    hole[..., 150:350, 100:400] = 1
    assert 0.28 <= guide_scale(hole) <= 0.34, guide_scale(hole)
    thin = torch.zeros(1, 1, 512, 512)
    thin[..., 200:230, :] = 1
    assert guide_scale(thin) == 1.0
    small = torch.zeros(1, 1, 160, 400)
    small[..., 20:140, 50:350] = 1
    assert guide_scale(small) == 0.8  # never below a 128 px short side

    class Recorder(TexturedMethod.__mro__[1]):  # a FillMethod that records the sizes it is asked to fill
        name = kind = source = "recorder"
        max_side, fixed_size, sizes = 1024, False, []

        def fill(self, image, hole):
            self.sizes.append(tuple(image.shape[-2:]))
            return image.new_full(image.shape, 0.5)

        def parameters_count(self):
            return 0

    base = Recorder()
    method = TexturedMethod(base, "recorded")
    image = torch.rand(1, 3, 512, 512)
    out = method.fill(image, hole)
    assert out.shape == image.shape and len(base.sizes) == 1, base.sizes
    assert 145 <= base.sizes[0][0] == base.sizes[0][1] <= 175, base.sizes


def test_the_vote_s_quantile_is_torch_s_to_the_bit():
    g = torch.Generator().manual_seed(3)
    for n in (1, 2, 5, 100, 7777, 20000):
        values = torch.rand(n, generator=g) ** 3
        for q in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
            assert torch.equal(_quantile(values, q), torch.quantile(values, q))
