"""Grain and JPEG blocks in a fill (fillgap.grain)."""

import io

import numpy as np
import torch
from PIL import Image

from fillgap import inpaint
from fillgap.filters import gaussian_blur
from fillgap.grain import GrainSettings, _blocks, _dct_matrix, add_grain, jpeg_grid, quant_steps
from fillgap.texture import synthesize


def _box(size: int, top: int, side: int) -> torch.Tensor:
    hole = torch.zeros(1, 1, size, size)
    hole[..., top : top + side, top : top + side] = 1
    return hole


def _mottled_sky(size: int = 160, rms: float = 3 / 255, seed: int = 0) -> torch.Tensor:
    """1 x 3 x size x size: a flat blue with mottling (noise blurred to blobs of a few pixels), a sky's grain."""
    noise = gaussian_blur(torch.randn(3, size, size, generator=torch.Generator().manual_seed(seed)), 1.5)
    noise = noise * (rms / noise.std())
    return (torch.tensor([0.2, 0.35, 0.7])[:, None, None] + noise).clamp(0, 1)[None]


def _band_rms(x: torch.Tensor, where: torch.Tensor, sigma: float = 6.0) -> float:
    band = x[0] - gaussian_blur(x[0], sigma)
    return float(band[where.expand_as(band)].pow(2).mean().sqrt())


def test_a_smooth_fill_gets_the_grain_of_its_surroundings():
    """The network smooths a sky; the hole gets the known region's grain back, to within a factor,
    and grain_sigma=0 leaves the guide's smooth fill as it was."""
    sky = _mottled_sky()
    hole = _box(160, 50, 60)
    guide = _gaussian_blur_picture(sky, 8.0)  # a network-like fill: the layout, no grain
    inner = hole[0, 0, 58:102, 58:102].bool()[None]
    known = _band_rms(sky[..., 58:102, 58:102], torch.ones_like(inner))
    flat = synthesize(sky, hole, guide)
    grained = add_grain(sky, hole, flat.clone())
    assert torch.equal(add_grain(sky, hole, flat.clone(), GrainSettings(sigma=0, jpeg=False)), flat)
    assert _band_rms(flat[..., 58:102, 58:102], inner) < 0.3 * known
    assert 0.6 * known < _band_rms(grained[..., 58:102, 58:102], inner) < 1.5 * known
    keep = ~hole.bool().expand_as(sky)
    assert torch.equal(grained[keep], sky[keep]) and torch.equal(grained, add_grain(sky, hole, flat.clone()))
    # uint8 in, uint8 out: the same grain, rounded
    as_bytes = (flat * 255).round().to(torch.uint8)
    grained_bytes = add_grain((sky * 255).round().to(torch.uint8), hole, as_bytes.clone())
    assert grained_bytes.dtype == torch.uint8
    assert (grained_bytes.float() / 255 - grained).abs().max() < 3 / 255
    # not a copy: the grain is new noise, not the picture's own pixels moved in
    assert (grained - sky)[hole.bool().expand_as(sky)].abs().mean() > 0.3 * known


def test_grain_is_capped():
    """Surroundings with strong fine texture do not turn a fill into noise: grain_max bounds it."""
    rough = _mottled_sky(rms=40 / 255, seed=4)
    hole = _box(160, 50, 60)
    guide = _gaussian_blur_picture(rough, 8.0)
    settings = GrainSettings()
    added = add_grain(rough, hole, guide.clone(), settings) - guide
    assert float(added[..., 58:102, 58:102].pow(2).mean().sqrt()) <= 1.3 * settings.max


def test_grain_comes_at_the_window_s_own_resolution():
    """Through the ``cra`` strategy (a window larger than the method works at), the grain is added
    after the fill is scaled back up: its fine band matches the photo's, not a coarse upscaled one."""
    sky = (_mottled_sky(384, rms=4 / 255)[0].permute(1, 2, 0) * 255).round().byte().numpy()
    mask = np.zeros(sky.shape[:2], bool)
    mask[120:260, 120:260] = True
    fine = lambda a: _band_rms(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255, inner, 2.0)  # noqa: E731
    inner = torch.zeros(1, 384, 384, dtype=torch.bool)
    inner[:, 135:245, 135:245] = True
    truth = fine(sky)
    for strategy in ("crop", "cra"):
        out = inpaint(sky, mask, "fillgap-texture", strategy=strategy, max_side=128)
        assert 0.5 * truth < fine(out) < 1.6 * truth, (strategy, fine(out), truth)
        assert np.array_equal(out[~mask], sky[~mask])


def _gaussian_blur_picture(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(x[0], sigma)[None]


def _jpeg_photo(size: int = 256, quality: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A mottled sky with waves in two corners, through a JPEG at ``quality``: (decoded uint8
    H x W x 3, the encoder's luma table as 8 x 8)."""
    sky = (_mottled_sky(size, rms=6 / 255)[0].permute(1, 2, 0) * 255).round().numpy()
    yy, xx = np.mgrid[:size, :size]
    sky += (40 * np.sin(xx / 9.0) * (yy > size // 2))[..., None]
    sky += (30 * np.sin(yy / 5.0 + xx / 7.0) * (xx > size // 2))[..., None]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    table = np.array(list(decoded.quantization[0]), np.float32).reshape(8, 8)
    return np.asarray(decoded.convert("RGB")).copy(), table


def _luma(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def test_jpeg_grid_and_steps_are_read_from_the_photo():
    photo, table = _jpeg_photo()
    everywhere = torch.ones(253, 251, dtype=torch.bool)
    # a crop 3 rows and 5 columns in: its blocks start at row 5 and column 3
    assert jpeg_grid(_luma(photo[3:, 5:]), everywhere) == (5, 3)
    # no grid in a PNG-born picture, nor in a JPEG scaled by 3/4
    clean = (_mottled_sky(256, rms=6 / 255)[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert jpeg_grid(_luma(clean), torch.ones(256, 256, dtype=torch.bool)) is None
    small = np.asarray(Image.fromarray(photo).resize((192, 192), Image.BILINEAR))
    assert jpeg_grid(_luma(small), torch.ones(192, 192, dtype=torch.bool)) is None
    # steps: the encoder's table wherever enough coefficients are non-zero to tell
    blocks, _, _ = _blocks(_luma(photo), 0, 0)
    d = _dct_matrix()
    steps = quant_steps((d @ (blocks - 128) @ d.T).reshape(-1, 64)).reshape(8, 8).numpy()
    told = np.isfinite(steps)
    assert told.sum() >= 12 and np.array_equal(steps[told], table[told]), (steps, table)


def test_the_fill_gets_the_photo_s_jpeg_blocks():
    """A smooth fill in a JPEG photo: its 8 x 8 luma blocks come out quantised with the photo's
    steps (blocking as the photo's); the known pixels and a PNG-born picture are left alone."""
    photo, table = _jpeg_photo()
    image = torch.from_numpy(photo).permute(2, 0, 1)[None]
    hole = torch.zeros(1, 1, 256, 256)
    hole[..., 80:176, 72:168] = 1  # whole blocks 80-176 x 72-168
    smooth = gaussian_blur(image[0].float() / 255, 6.0)[None]
    out = add_grain(image, hole, smooth.clone(), GrainSettings(sigma=0))
    blocks, _, _ = _blocks(_luma((out[0].permute(1, 2, 0) * 255).numpy())[80:176, 72:168], 0, 0)
    d = _dct_matrix()
    coefficients = (d @ (blocks - 128) @ d.T).reshape(-1, 8, 8)
    on_grid = (coefficients[:, 0, 1] / table[0, 1] - torch.round(coefficients[:, 0, 1] / table[0, 1])).abs()
    assert float(on_grid.mean()) < 0.1  # on the photo's lattice (255ths rounding aside)
    before = d @ (_blocks(_luma((smooth[0].permute(1, 2, 0) * 255).numpy())[80:176, 72:168], 0, 0)[0] - 128) @ d.T
    assert float((before[..., 0, 1] / table[0, 1] - torch.round(before[..., 0, 1] / table[0, 1])).abs().mean()) > 0.15
    keep = ~hole.bool().expand_as(out)
    assert torch.equal(out[keep], smooth[keep])
    # a PNG-born picture has no grid: the fill stays as it was
    clean = _mottled_sky(256, rms=6 / 255)
    flat = gaussian_blur(clean[0], 6.0)[None]
    assert torch.equal(add_grain(clean, hole, flat.clone(), GrainSettings(sigma=0)), flat)


def test_blocks_the_rim_crosses_keep_the_fill():
    """Quantising a block that is part photo, part fill puts the error on the fill's pixels next
    to the step between them: a line along the rim. Only blocks wholly in the hole are quantised."""
    photo, _ = _jpeg_photo()
    image = torch.from_numpy(photo).permute(2, 0, 1)[None]
    hole = torch.zeros(1, 1, 256, 256)
    hole[..., 83:171, 77:163] = 1  # off the 8 px grid: its rim crosses blocks
    smooth = gaussian_blur(image[0].float() / 255, 6.0)[None]
    out = add_grain(image, hole, smooth.clone(), GrainSettings(sigma=0))
    whole = torch.zeros(256, 256, dtype=torch.bool)
    whole[88:168, 80:160] = True  # the blocks wholly inside
    rim = hole[0, 0].bool() & ~whole
    assert torch.equal(out[0][:, rim], smooth[0][:, rim])
    assert (out[0][:, whole] - smooth[0][:, whole]).abs().mean() > 0.5 / 255  # these were quantised


def test_chunks_give_the_same_grain_and_blocks(monkeypatch):
    """A hole larger than one chunk is finished piece by piece (no full-size float copy): the
    grain level and the JPEG lattice come out as in one piece, the known pixels untouched."""
    import fillgap.grain as grain

    photo, table = _jpeg_photo()
    image = torch.from_numpy(photo).permute(2, 0, 1)[None]
    hole = torch.zeros(1, 1, 256, 256)
    hole[..., 40:216, 36:220] = 1
    smooth = gaussian_blur(image[0].float() / 255, 6.0)[None]
    whole = add_grain(image, hole, smooth.clone())
    monkeypatch.setattr(grain, "CHUNK", 48)
    pieces = add_grain(image, hole, smooth.clone())
    inside = hole.bool().expand_as(whole)
    assert torch.equal(pieces[~inside], smooth[~inside])
    d = _dct_matrix()
    for out in (whole, pieces):
        blocks, _, _ = _blocks(_luma((out[0].permute(1, 2, 0) * 255).numpy())[40:216, 40:216], 0, 0)
        c = (d @ (blocks - 128) @ d.T)[..., 0, 1] / table[0, 1]
        assert float((c - torch.round(c)).abs().mean()) < 0.1
    rms = [float((out - smooth)[inside].pow(2).mean().sqrt()) for out in (whole, pieces)]
    assert 0.7 < rms[1] / rms[0] < 1.4, rms


def test_sensor_noise_is_read_from_the_finest_band():
    """White noise of std 0.02 reads as 0.02; streaks and shading without noise read as next to
    nothing (they are sparse in the 2 x 2 diagonal band); no clear pixel: no limit."""
    from fillgap.grain import _sensor_noise

    everywhere = torch.ones(160, 160, dtype=torch.bool)
    white = 0.5 + 0.02 * torch.randn(3, 160, 160, generator=torch.Generator().manual_seed(1))
    assert abs(_sensor_noise(white, everywhere) - 0.02) < 0.002
    rows = torch.arange(160.0)[:, None].expand(160, 160)
    streaks = (0.5 + 0.2 * torch.sin(rows / 3) + 0.1 * torch.linspace(0, 1, 160)[None]).expand(3, -1, -1)
    assert _sensor_noise(streaks.contiguous(), everywhere) < 0.001
    assert _sensor_noise(white, torch.zeros(160, 160, dtype=torch.bool)) == float("inf")


def test_the_noise_cap_keeps_grain_off_a_noiseless_picture():
    """A smooth picture whose band above 4 px is structure, not noise: without the cap the fill
    gets grain up to the structure's level; capped at 2x the (zero) sensor noise, next to none."""
    rows = torch.arange(128.0)[:, None].expand(128, 128)
    streaks = (0.5 + 0.05 * torch.sin(rows / 2.5)).expand(3, -1, -1).contiguous()[None]
    hole = _box(128, 40, 48)
    flat = torch.where(hole.bool(), streaks.mean(), streaks)
    inside = hole[0, 0].bool()
    free = add_grain(streaks, hole, flat.clone(), GrainSettings())
    capped = add_grain(streaks, hole, flat.clone(), GrainSettings(noise_cap=2.0))
    added, kept = float((free - flat)[0][:, inside].std()), float((capped - flat)[0][:, inside].std())
    assert added > 0.002 and kept < 0.05 * added
