"""The fill pipeline's steps (mask, plan, run, composite), its entry points, blend modes, the method
registry and the API's refusals."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap import inpaint
from fillgap.checkpoint import export_weights
from fillgap.errors import FillgapError
from fillgap.fill import composite, plan, plan_windows, prepare_mask, run
from fillgap.fill.plan import Window
from fillgap.methods import ClassicalMethod, FillMethod, TorchNetwork, get_method, list_methods, register_runtime
from fillgap.models import create_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A random (not zero-headed) ffc-tiny as released weights: any difference between paths shows."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    export_weights(path, create_model("ffc-tiny", refine=False))
    return str(path)


def picture(h=72, w=96, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=2) % 256
    return np.clip(base + rng.integers(-25, 25, base.shape), 0, 255).astype(np.uint8)


# -- step 1: the mask
def test_thin_stroke_survives_shrinking_the_mask():
    big = np.zeros((1000, 1000), np.float32)
    big[:, 501] = 1.0                        # one pixel wide, on an odd column
    big[333, :] = 1.0
    small = prepare_mask(big, (250, 250), resize=True)
    assert (small > 0).any(axis=0).all() and (small > 0).any(axis=1).all()  # unbroken both ways
    assert (small == 1).sum() == (small > 0).sum()  # hard blend: every touched pixel is a full hole
    soft = prepare_mask(big, (250, 250), resize=True, blend="soft")
    assert 0 < soft[soft > 0].min() < 1     # soft keeps the coverage as a weight


def test_size_mismatch_without_resize_is_an_error():
    with pytest.raises(FillgapError, match="mask is 10x10 but the image is 20x30"):
        prepare_mask(np.ones((10, 10)), (30, 20))


# -- step 2: the plan
def test_separated_holes_get_their_own_windows_and_close_ones_merge():
    hole = np.zeros((1000, 1500), bool)
    hole[10:30, 20:50] = True        # top left
    hole[950:980, 1400:1450] = True  # bottom right
    windows = plan_windows(hole)
    assert len(windows) == 2
    assert all(w.height < 200 and w.width < 200 for w in windows)
    assert plan_windows(hole, single=True) == [Window(0, 1000, 0, 1500)]
    hole[35:40, 60:70] = True        # next to the first: its window overlaps, one group
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


def test_classical_method_through_the_pipeline_matches_the_function():
    from fillgap.methods.classical import telea
    img = picture(120, 160)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[50:70, 60:90] = 255
    ours = inpaint(img, mask, "opencv-telea")
    theirs = telea(img, mask)  # Telea only looks 5 px around the hole: the window holds all it needs
    assert np.array_equal(ours, theirs)



@pytest.mark.parametrize("name", ["opencv-telea", "opencv-ns", "opencv-fsr", "skimage-biharmonic", "fillgap-diffusion"])
def test_every_classical_method_fills_a_smooth_picture_closely(name):
    """Through the pipeline (which hands the functions strided views of its batch): a smooth
    gradient's hole comes back within a few grey levels of the truth. OpenCV 5 wrote FSR's fill into
    a copy of a strided output buffer, and the hole stayed black (mean error ~100)."""
    yy, xx = np.mgrid[0:64, 0:80]
    img = np.stack([xx * 2 + 40, yy * 2 + 60, 200 - xx - yy], axis=2).astype(np.uint8)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[24:36, 30:46] = 255
    out = inpaint(img, mask, name)
    hole = mask > 0
    assert np.abs(out[hole].astype(int) - img[hole]).mean() < 4


def test_shiftmap_fills_a_textured_hole_with_the_pictures_colours():
    """ShiftMap copies known pixels into the hole (through Lab and back): the marked hole is replaced,
    not left black or as it was, its colours stay within the picture's, the rest is untouched."""
    from fillgap.methods.classical import shiftmap
    yy, xx = np.mgrid[0:48, 0:64]
    stripes = ((xx // 4 + yy // 6) % 2).astype(bool)
    img = np.where(stripes[..., None], (200, 60, 40), (30, 110, 190)).astype(np.uint8)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[16:32, 20:40] = 255
    hole = mask > 0
    marked = img.copy()
    marked[hole] = (255, 0, 255)  # what was there must not survive
    lo, hi = img.reshape(-1, 3).min(0).astype(int) - 3, img.reshape(-1, 3).max(0).astype(int) + 3
    for out in (shiftmap(marked, mask), inpaint(marked, mask, "opencv-shiftmap")):
        assert out.shape == img.shape and out.dtype == np.uint8
        filled = out[hole].astype(int)
        assert not (filled == (255, 0, 255)).all(axis=1).any() and not (filled == 0).all(axis=1).any()
        assert ((filled >= lo) & (filled <= hi)).all()
        assert filled.std(axis=0).min() > 20  # both stripe colours, not a flat average
        assert np.array_equal(out[~hole], marked[~hole])


@pytest.mark.parametrize("name", ["opencv-telea", "opencv-ns", "opencv-fsr", "opencv-shiftmap", "skimage-biharmonic",
                                  "mean-fill"])
@pytest.mark.parametrize("shape", [(1, 1), (9, 7)])
def test_a_mask_over_the_whole_picture_gives_mid_grey(name, shape):
    """Nothing known to fill from: every classical method gives mid grey (Telea and NS returned the
    picture unchanged, the biharmonic solve raised on a 1 x 1 picture)."""
    img = np.full(shape + (3,), 30, np.uint8)
    out = inpaint(img, np.ones(shape, np.uint8), name)
    assert (out == 128).all()


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
    mask[30:32, 10:40] = 100           # grey edge: blend matters
    mask[60:80, 90:115] = 255          # a second, separate hole: two windows
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    options = dict(strategy="crop", blend="soft", max_side=64)
    api = inpaint(img, mask, weights, dilate=1, **options)

    rc = main(["fill", str(tmp_path / "in" / "a.png"), "-m", str(tmp_path / "masks" / "a.png"), "-o",
               str(tmp_path / "cli.png"), "--model", weights, "--dilate", "1", "--strategy", "crop",
               "--blend", "soft", "--max-side", "64"])
    assert rc == 0
    cli = np.asarray(Image.open(tmp_path / "cli.png").convert("RGB"))

    report = fill_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out", weights, dilate=1, **options)
    assert not report.failed
    folder = np.asarray(Image.open(tmp_path / "out" / "a.png").convert("RGB"))

    with running(create_app(weights)) as base:
        buf_i, buf_m = io.BytesIO(), io.BytesIO()
        Image.fromarray(img).save(buf_i, format="PNG")
        Image.fromarray(mask).save(buf_m, format="PNG")
        r = httpx.post(f"{base}/api/inpaint", timeout=120,
                       files={"image": ("a.png", buf_i.getvalue(), "image/png"),
                              "mask": ("m.png", buf_m.getvalue(), "image/png")},
                       data={"dilate": "1", "strategy": "crop", "blend": "soft", "max_side": "64"})
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
        r = httpx.post(f"{base}/api/inpaint", timeout=120,
                       files={"image": ("a.png", buf_i.getvalue(), "image/png"),
                              "mask": ("m.png", buf_m.getvalue(), "image/png")},
                       data={"resize_mask": "true"})
    out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    changed = (out != img).any(axis=2)
    assert changed.any(axis=1).sum() >= 45  # the stroke crosses the picture top to bottom


# -- the registry
def test_registry_names_paths_and_objects(weights):
    assert get_method("opencv-telea").kind == "classical"
    assert isinstance(get_method("mean-fill"), ClassicalMethod)
    net = get_method(weights)
    assert isinstance(net, TorchNetwork) and net.source == weights
    assert get_method(net) is net
    assert get_method(create_model("ffc-tiny")).kind == "network"
    assert get_method(None).name == "fillgap-default"
    rows = {r.name: r for r in list_methods()}
    assert rows["fillgap-default"].default and not rows["opencv-telea"].default
    assert {"opencv-telea", "opencv-ns", "opencv-fsr", "skimage-biharmonic", "mean-fill", "ffc-small"} <= set(rows)
    assert rows["ffc-small"].trainable and not rows["opencv-telea"].trainable
    with pytest.raises(FillgapError, match="unknown model 'lama'"):
        get_method("lama")
    with pytest.raises(FillgapError, match="unknown runtime"):
        get_method(weights, runtime="tpu")


def test_untrained_architectures_need_asking_for():
    img = picture()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[5:10, 5:10] = 255
    for call in (lambda: get_method("ffc-tiny"), lambda: inpaint(img, mask, "ffc-tiny")):
        with pytest.raises(FillgapError, match="'ffc-tiny' is a trainable architecture"):
            call()
    method = get_method("ffc-tiny", allow_untrained=True)  # tests and benches time fresh networks
    assert method.kind == "network" and method.name == "ffc-tiny"
    assert inpaint(img, mask, method).shape == img.shape


def test_another_runtime_plugs_in_through_one_hook():
    class Grey(FillMethod):
        name, kind, max_side = "grey", "network", 256

        def fill(self, image, hole):
            return torch.full_like(image[:, :3], 0.5)

    register_runtime("test-grey", lambda model, source: Grey())
    img = picture()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[5:10, 5:10] = 255
    out = inpaint(img, mask, create_model("ffc-tiny"), runtime="test-grey")
    assert (out[5:10, 5:10] == 128).all()


def test_models_command_marks_the_default(capsys):
    from fillgap.cli import main
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("* fillgap-default") for line in out.splitlines())
    assert "opencv-telea" in out and "ffc-small" in out


# -- API misuse: one clear FillgapError each
@pytest.mark.parametrize("kwargs,message", [
    (dict(dilate=10 ** 6), "dilate must be between 0 and"),
    (dict(dilate=2.5), "dilate must be a whole number"),
    (dict(dilate=-3), "dilate must be between 0 and"),
    (dict(model=123), "model must be a method name"),
    (dict(max_side=0), "max_side must be at least"),
    (dict(max_side=100.5), "max_side must be a whole number"),
    (dict(strategy="magic"), "strategy must be one of"),
    (dict(blend="multiply"), "blend must be one of"),
])
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
    single = torch.cat([run(method, x[i:i + 1], m[i:i + 1], "crop") for i in range(3)])
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
    assert ratios["resize"] < 0.5, ratios   # a 64 px fill upscaled: the texture is gone
    assert 0.8 < ratios["cra"] < 1.25, ratios  # the context's residual brings it back
    # auto picks cra for a window beyond the method's limit
    assert np.array_equal(inpaint(img, mask, "opencv-telea", max_side=64),
                          inpaint(img, mask, "opencv-telea", max_side=64, strategy="cra"))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_a_fill_keeps_the_photos_colour_profile_and_exif(tmp_path, suffix):
    """A photographer's file comes back with its ICC profile (a wide-gamut photo shown without it
    has the wrong colours) and its EXIF, less the orientation tag: the pixels are upright now."""
    from PIL import ImageCms
    from fillgap.files import fill_file
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Canon"   # make
    exif[0x0112] = 6         # orientation: shown turned by 90 degrees
    Image.fromarray(picture(48, 64)).save(tmp_path / "in.jpg", icc_profile=icc, exif=exif.tobytes(), quality=95)
    mask = np.zeros((64, 48), np.uint8)  # the upright picture's size
    mask[20:30, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    fill_file(tmp_path / "in.jpg", tmp_path / "m.png", tmp_path / f"out{suffix}", "mean-fill")
    out = Image.open(tmp_path / f"out{suffix}")
    assert out.size == (48, 64)
    assert out.info.get("icc_profile") == icc
    assert out.getexif().get(0x010F) == "Canon" and out.getexif().get(0x0112, 1) == 1


def test_a_greyscale_photo_comes_back_greyscale_with_its_profile(tmp_path):
    """A scanned black-and-white photo: the output is one channel (no colour tint in the hole, where
    the network's three channels differ a little), known pixels identical, its grey profile kept;
    a profile of another colour space than the output's is dropped."""
    from PIL import ImageCms
    from fillgap.files import fill_file
    grey_icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    grey_icc[16:20] = b"GRAY"  # the header's colour-space field: a grey picture's profile
    grey = picture(40, 50)[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "in.png", icc_profile=bytes(grey_icc))
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    tiny = create_model("ffc-tiny", refine=False)  # random: its three output channels differ
    fill_file(tmp_path / "in.png", tmp_path / "m.png", tmp_path / "out.png", tiny)
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "L" and out.info.get("icc_profile") == bytes(grey_icc)
    assert np.array_equal(np.asarray(out)[mask == 0], grey[mask == 0])
    cmyk_icc = bytearray(grey_icc)
    cmyk_icc[16:20] = b"CMYK"
    Image.fromarray(picture(40, 50)).save(tmp_path / "rgb.png", icc_profile=bytes(cmyk_icc))
    fill_file(tmp_path / "rgb.png", tmp_path / "m.png", tmp_path / "out-rgb.png", "mean-fill")
    assert "icc_profile" not in Image.open(tmp_path / "out-rgb.png").info


def test_the_folder_engine_keeps_the_colour_profile_too(tmp_path):
    from PIL import ImageCms
    from fillgap.engines.local import fill_folder
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(picture(40, 50)).save(tmp_path / "in" / "a.jpg", icc_profile=icc)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    assert not fill_folder(tmp_path / "in", tmp_path / "masks", tmp_path / "out", "mean-fill").failed
    assert Image.open(tmp_path / "out" / "a.png").info.get("icc_profile") == icc


def test_metadata_is_rebuilt_for_every_output_format(tmp_path):
    """The review's cases: EXIF read from a WebP (stored without its header) comes out readable in a
    JPEG; only the kept tags travel (no maker note, no orientation, no other IFD0 tags, so no
    thumbnail of the unfilled picture either); an oversized EXIF is left out instead of failing the
    JPEG writer; a greyscale picture with alpha becomes an RGBA BMP and an RGB WebP without its
    grey profile."""
    from PIL import ImageCms
    from fillgap.files import fill_file
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    exif = Image.Exif()
    exif[0x010F] = "CamMake"
    exif[0x0213] = 1                       # YCbCrPositioning: not kept
    exif[0x0112] = 1
    exif.get_ifd(0x8769)[0x9003] = "2020:01:01 10:00:00"
    exif.get_ifd(0x8769)[0x927C] = b"maker" * 10
    Image.fromarray(picture(40, 50)).save(tmp_path / "in.webp", exif=exif.tobytes())
    fill_file(tmp_path / "in.webp", tmp_path / "m.png", tmp_path / "out.jpg", "mean-fill")
    got = Image.open(tmp_path / "out.jpg").getexif()
    assert got.get(0x010F) == "CamMake" and 0x0213 not in got and 0x0112 not in got
    assert dict(got.get_ifd(0x8769)) == {0x9003: "2020:01:01 10:00:00"}

    big = Image.Exif()
    big[0x010E] = "x" * 70_000             # an ImageDescription larger than a JPEG segment
    Image.fromarray(picture(40, 50)).save(tmp_path / "big.png", exif=big.tobytes())
    fill_file(tmp_path / "big.png", tmp_path / "m.png", tmp_path / "big.jpg", "mean-fill")
    assert 0x010E not in Image.open(tmp_path / "big.jpg").getexif()

    grey_icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    grey_icc[16:20] = b"GRAY"
    la = Image.fromarray(picture(40, 50)[..., 0], "L")
    la.putalpha(200)
    la.save(tmp_path / "la.png", icc_profile=bytes(grey_icc))
    fill_file(tmp_path / "la.png", tmp_path / "m.png", tmp_path / "la.bmp", "mean-fill")
    assert Image.open(tmp_path / "la.bmp").mode in ("RGB", "RGBA")  # written (it raised on LA before)
    fill_file(tmp_path / "la.png", tmp_path / "m.png", tmp_path / "la.webp", "mean-fill")
    webp = Image.open(tmp_path / "la.webp")
    assert webp.mode == "RGBA" and "icc_profile" not in webp.info
    fill_file(tmp_path / "la.png", tmp_path / "m.png", tmp_path / "la-out.png", "mean-fill")
    png = Image.open(tmp_path / "la-out.png")
    assert png.mode == "LA" and png.info.get("icc_profile") == bytes(grey_icc)


def test_a_16_bit_picture_keeps_its_profile(tmp_path):
    from PIL import ImageCms
    from fillgap.files import fill_file
    grey_icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    grey_icc[16:20] = b"GRAY"
    Image.fromarray((picture(40, 50)[..., 0].astype(np.uint16) * 257)).save(tmp_path / "in16.png", icc_profile=bytes(grey_icc))
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    fill_file(tmp_path / "in16.png", tmp_path / "m.png", tmp_path / "out.png", "mean-fill")
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "L" and out.info.get("icc_profile") == bytes(grey_icc)


def test_pngs_are_written_with_fast_compression_and_exact_pixels(tmp_path):
    """PNG encoding was the slowest step of a 12 MP fill at zlib's default level (bench/png_write.py):
    fillgap writes with the fastest level (the zlib header says so), pixels unchanged."""
    import struct

    from fillgap.imageio import encode_png, read_image, write_image

    rgb = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    rgb[:, :40] = 7  # some redundancy for zlib to find
    for data in (write_image(tmp_path / "a.png", rgb).read_bytes(), encode_png(rgb)):
        pos = 8
        while data[pos + 4:pos + 8] != b"IDAT":
            pos += 12 + struct.unpack(">I", data[pos:pos + 4])[0]
        cmf, flg = data[pos + 8], data[pos + 9]
        assert cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0  # a zlib stream
        assert flg >> 6 == 0, f"zlib level class {flg >> 6} (0: fastest)"
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
