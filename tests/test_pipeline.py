"""The fill pipeline's steps (mask, plan, run, composite), its entry points, blend modes, the method
registry and the API's refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap import inpaint
from fillgap.errors import FillgapError
from fillgap.fill import composite, plan, plan_windows, prepare_mask, run
from fillgap.fill.plan import Window
from fillgap.methods import get_method

from _pictures import picture


# -- step 1: the mask
def test_thin_stroke_survives_shrinking_the_mask():
    big = np.zeros((1000, 1000), np.float32)
    big[:, 501] = 1.0  # one pixel wide, on an odd column
    big[333, :] = 1.0
    small = prepare_mask(big, (250, 250), resize=True)
    assert (small > 0).any(axis=0).all() and (small > 0).any(axis=1).all()  # unbroken both ways
    assert (small == 1).sum() == (small > 0).sum()  # hard blend: every touched pixel is a full hole
    soft = prepare_mask(big, (250, 250), resize=True, blend="soft")
    assert 0 < soft[soft > 0].min() < 1  # soft keeps the coverage as a weight


def test_size_mismatch_without_resize_is_an_error():
    with pytest.raises(FillgapError, match="mask is 10x10 but the image is 20x30"):
        prepare_mask(np.ones((10, 10)), (30, 20))


# -- step 2: the plan
def test_separated_holes_get_their_own_windows_and_close_ones_merge():
    hole = np.zeros((1000, 1500), bool)
    hole[10:30, 20:50] = True  # top left
    hole[950:980, 1400:1450] = True  # bottom right
    windows = plan_windows(hole)
    assert len(windows) == 2
    assert all(w.height < 200 and w.width < 200 for w in windows)
    assert plan_windows(hole, single=True) == [Window(0, 1000, 0, 1500)]
    hole[35:40, 60:70] = True  # next to the first: its window overlaps, one group
    assert len(plan_windows(hole)) == 2
    # Every hole pixel is inside exactly one window, and windows are disjoint.
    cover = np.zeros(hole.shape, int)
    for w in plan_windows(hole):
        cover[w.slices] += 1
    assert cover.max() == 1 and (cover[hole] == 1).all()


# -- step 4: the composite
def test_composite_keeps_unmasked_pixels_bit_identical():
    img = picture()
    alpha = np.zeros(img.shape[:2], np.float32)
    alpha[10:20, 10:30] = 1.0
    alpha[20:25, 10:30] = 0.3
    win = Window(5, 40, 5, 50)
    out = img.copy()
    composite(out, img, alpha, win, torch.rand(3, 35, 45))
    assert np.array_equal(out[alpha == 0], img[alpha == 0])
    assert (out[10:20, 10:30] != img[10:20, 10:30]).any()


# -- whole pipeline, blend modes
def test_hard_blend_replaces_every_grey_pixel_soft_blends(weights):
    img = picture()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[20:50, 30:70] = 255
    mask[50:52, 30:70] = 40  # an anti-aliased edge
    hard = inpaint(img, mask, "opencv-telea")
    soft = inpaint(img, mask, "opencv-telea", blend="soft")
    full = inpaint(img, (mask > 0).astype(np.uint8) * 255, "opencv-telea")
    assert np.array_equal(hard, full)  # grey = hole: no trace of the original at the edge
    edge = soft[50:52, 30:70].astype(float)
    expected = 40 / 255 * full[50:52, 30:70] + (1 - 40 / 255) * img[50:52, 30:70].astype(float)
    assert np.abs(edge - expected).max() <= 1.0
    assert np.array_equal(soft[mask == 0], img[mask == 0])


def test_strategies_fill_only_the_hole_and_differ_on_large_windows(weights):
    img = picture(300, 400)
    mask = np.zeros(img.shape[:2], np.float32)
    mask[100:200, 100:300] = 1
    outs = {s: inpaint(img, mask, weights, max_side=64, strategy=s) for s in ("resize", "crop")}
    for out in outs.values():
        assert np.array_equal(out[mask == 0], img[mask == 0])
    small = {s: inpaint(img, mask, weights, strategy=s) for s in ("resize", "crop", "auto")}
    assert np.array_equal(small["crop"], small["auto"])  # fits the limit: auto is crop


def thin_line_mask(h, w, width=3):
    import cv2

    mask = np.zeros((h, w), np.uint8)
    cv2.polylines(mask, [np.array([[3, 5], [w - 20, h // 3], [w // 3, h - 4]], np.int32)], False, 255, width)
    return mask


def test_thin_tiles_write_every_hole_pixel_once_and_fit_the_limit():
    from fillgap.fill import thin_tiles

    hole = thin_line_mask(300, 500) > 0
    window = Window(0, 300, 0, 500)
    pieces = thin_tiles(hole, window, 200)
    written = np.zeros(hole.shape, int)
    for context, write in pieces:
        assert (context.height, context.width) == (pieces[0][0].height, pieces[0][0].width) and context.height <= 200
        assert context.top <= write.top and write.bottom <= context.bottom
        assert context.left <= write.left and write.right <= context.right
        written[write.slices] += 1
    assert len(pieces) > 4 and (written[hole] == 1).all()
    disc = np.zeros(hole.shape, np.uint8)
    import cv2

    cv2.circle(disc, (250, 150), 60, 255, -1)
    assert thin_tiles(disc > 0, window, 200) is None  # thick: cra's job
    assert thin_tiles(hole, window, 150) is None  # cells under MIN_TILE_CELL: cra too


def test_auto_fills_a_thin_hole_of_a_large_window_at_native_resolution(tmp_path):
    """A scratch across a window larger than the method's limit: auto cuts it into native tiles (a
    working-scale fill shrank it below a pixel and cra pasted other places' texture into it), so
    Telea limited to 224 px gives what Telea on the whole picture gives, through the API and the
    folder engine alike; the tiles share one size."""
    from fillgap.engines.local import fill_folder

    img = picture(240, 360, seed=5)
    mask = thin_line_mask(240, 360)
    method = get_method("opencv-telea")
    jobs = list(plan(img, mask > 0, method, "auto", 224))
    assert len(jobs) > 1 and all(j.strategy == "crop" and j.key == jobs[0].key for j in jobs)  # one size
    assert max(jobs[0].image.shape[-2:]) <= 224
    native = inpaint(img, mask, method)
    tiled = inpaint(img, mask, method, max_side=224)
    cra = inpaint(img, mask, method, max_side=224, strategy="cra")
    hole = mask > 0

    def err(out):
        return np.abs(out[hole].astype(int) - img[hole]).mean()

    assert err(tiled) < 1.01 * err(native) and err(tiled) < 0.8 * err(cra)
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    assert not fill_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out", "opencv-telea", max_side=224).failed
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png").convert("RGB")), tiled)


# -- the same pixels from every entry point
def test_api_cli_folder_and_server_return_identical_pixels(tmp_path, weights):
    from fillgap.engines.local import fill_folder
    from fillgap.cli import main
    from fillgap.server import create_app, running
    import httpx

    img = picture(90, 120, seed=3)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[10:30, 10:40] = 255
    mask[30:32, 10:40] = 100  # grey edge: blend matters
    mask[60:80, 90:115] = 255  # a second, separate hole: two windows
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    options = dict(strategy="crop", blend="soft", max_side=64)
    api = inpaint(img, mask, weights, dilate=1, **options)

    rc = main(
        [
            "fill",
            str(tmp_path / "in" / "a.png"),
            "-m",
            str(tmp_path / "masks" / "a.png"),
            "-o",
            str(tmp_path / "cli.png"),
            "--model",
            weights,
            "--dilate",
            "1",
            "--strategy",
            "crop",
            "--blend",
            "soft",
            "--max-side",
            "64",
        ]
    )
    assert rc == 0
    cli = np.asarray(Image.open(tmp_path / "cli.png").convert("RGB"))

    report = fill_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out", weights, dilate=1, **options)
    assert not report.failed
    folder = np.asarray(Image.open(tmp_path / "out" / "a.png").convert("RGB"))

    with running(create_app(weights)) as base:
        buf_i, buf_m = io.BytesIO(), io.BytesIO()
        Image.fromarray(img).save(buf_i, format="PNG")
        Image.fromarray(mask).save(buf_m, format="PNG")
        r = httpx.post(
            f"{base}/api/inpaint",
            timeout=120,
            files={"image": ("a.png", buf_i.getvalue(), "image/png"), "mask": ("m.png", buf_m.getvalue(), "image/png")},
            data={"dilate": "1", "strategy": "crop", "blend": "soft", "max_side": "64"},
        )
        assert r.status_code == 200, r.text
        server = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert not np.array_equal(api, img)
    for name, got in (("cli", cli), ("folder", folder), ("server", server)):
        assert np.array_equal(got, api), name


def test_server_resizes_a_thin_stroke_mask_without_losing_it(tmp_path):
    from fillgap.server import create_app, running
    import httpx

    img = picture(50, 60)
    mask = np.zeros((200, 240), np.uint8)
    mask[:, 121] = 255  # 1 px at 4x the picture's size
    buf_i, buf_m = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(buf_i, format="PNG")
    Image.fromarray(mask).save(buf_m, format="PNG")
    with running(create_app("mean-fill")) as base:
        r = httpx.post(
            f"{base}/api/inpaint",
            timeout=120,
            files={"image": ("a.png", buf_i.getvalue(), "image/png"), "mask": ("m.png", buf_m.getvalue(), "image/png")},
            data={"resize_mask": "true"},
        )
    out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    changed = (out != img).any(axis=2)
    assert changed.any(axis=1).sum() >= 45  # the stroke crosses the picture top to bottom


# -- API misuse: one clear FillgapError each
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(dilate=10**6), "dilate must be between 0 and"),
        (dict(dilate=2.5), "dilate must be a whole number"),
        (dict(dilate=-3), "dilate must be between 0 and"),
        (dict(model=123), "model must be a method name"),
        (dict(max_side=0), "max_side must be at least"),
        (dict(max_side=100.5), "max_side must be a whole number"),
        (dict(strategy="magic"), "strategy must be one of"),
        (dict(blend="multiply"), "blend must be one of"),
    ],
)
def test_api_misuse_is_a_clear_error(kwargs, message):
    img = picture(20, 20)
    mask = np.zeros((20, 20), np.float32)
    mask[5:10, 5:10] = 1
    with pytest.raises(FillgapError, match=message):
        inpaint(img, mask, **{"model": "mean-fill", **kwargs})


def test_nan_in_a_mask_is_a_clear_error():
    mask = np.zeros((20, 20), np.float32)
    mask[3, 3] = np.nan
    with pytest.raises(FillgapError, match="NaN"):
        inpaint(picture(20, 20), mask, "mean-fill")


def test_run_batches_windows_of_one_size(weights):
    method = get_method(weights)
    x = torch.rand(3, 3, 40, 48)
    m = torch.zeros(3, 1, 40, 48)
    m[:, :, 10:20, 10:30] = 1
    batched = run(method, x, m, "crop")
    single = torch.cat([run(method, x[i : i + 1], m[i : i + 1], "crop") for i in range(3)])
    assert batched.shape == (3, 3, 40, 48)
    assert torch.allclose(batched, single, atol=1e-5)


# -- cra
def test_cra_restores_the_high_frequencies_of_a_periodic_texture():
    from fillgap.fill import cra_available
    from fillgap.eval.metrics import hole_detail_ratio

    if not cra_available():
        pytest.skip("fillgap.models.attention not in this build")
    tile = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = np.tile(tile, (32, 40, 1))  # 256 x 320, period 8 px: all its detail is fine detail
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[100:160, 130:200] = 255
    ratios = {}
    for strategy in ("resize", "cra"):
        out = inpaint(img, mask, "opencv-telea", max_side=64, strategy=strategy)
        assert np.array_equal(out[mask == 0], img[mask == 0])
        ratios[strategy] = hole_detail_ratio(out, img, mask)
    assert ratios["resize"] < 0.5, ratios  # a 64 px fill upscaled: the texture is gone
    assert 0.8 < ratios["cra"] < 1.25, ratios  # the context's residual brings it back
    # auto picks cra for a window beyond the method's limit
    assert np.array_equal(
        inpaint(img, mask, "opencv-telea", max_side=64), inpaint(img, mask, "opencv-telea", max_side=64, strategy="cra")
    )
