"""No silent garbage from masks: an inverted mask, a photo given as the mask, or a mask that would
fill most of the picture is refused (one line naming --invert-mask and --force) instead of
written as a smear with exit code 0; --invert-mask, --mask-threshold and --force."""

import numpy as np
import pytest
from PIL import Image

from fillgap.files import MAX_HOLE_SHARE, check_mask, fill_file, mask_problem
from fillgap.cli import main
from fillgap.errors import FillgapError
from fillgap.fill import inpaint


@pytest.fixture
def files(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "in.png")  # 96 x 128
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[30:60, 40:90] = 255  # 12 % of the picture
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(255 - mask).save(tmp_path / "inverted.png")
    Image.fromarray(mask).save(tmp_path / "mask.jpg", quality=75)
    return tmp_path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_an_inverted_mask_is_refused_and_invert_mask_fills_it(files, capsys):
    code, err = run(
        ["fill", files / "in.png", "-m", files / "inverted.png", "-o", files / "o.png", "--model", "opencv-telea"],
        capsys,
    )
    line = one_line(err)
    assert code == 1 and "would fill 88%" in line and "--invert-mask" in line and "--force" in line
    assert not (files / "o.png").exists()
    code, err = run(
        [
            "fill",
            files / "in.png",
            "-m",
            files / "inverted.png",
            "-o",
            files / "o.png",
            "--model",
            "opencv-telea",
            "--invert-mask",
        ],
        capsys,
    )
    assert code == 0, err
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "ref.png", "--model", "opencv-telea"], capsys
    )
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(files / "o.png")), np.asarray(Image.open(files / "ref.png")))


def test_a_photo_given_as_the_mask_is_refused_and_force_uses_it(files, capsys):
    # the classic slip: the picture twice (fill in.png -m in.png)
    code, err = run(
        ["fill", files / "in.png", "-m", files / "in.png", "-o", files / "o.png", "--model", "mean-fill"], capsys
    )
    line = one_line(err)
    assert code == 1 and "looks like a photo" in line and "--invert-mask" in line and "--force" in line
    assert not (files / "o.png").exists()
    code, err = run(
        ["fill", files / "in.png", "-m", files / "in.png", "-o", files / "o.png", "--model", "mean-fill", "--force"],
        capsys,
    )
    assert code == 0, err


def test_the_hole_share_limit(files):
    h, w = 50, 100
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(files / "black.png")
    for cols, refused in ((59, False), (60, True)):
        m = np.zeros((h, w), np.uint8)
        m[:, :cols] = 255
        Image.fromarray(m).save(files / f"m{cols}.png")
        out = files / f"o{cols}.png"
        if refused:
            with pytest.raises(FillgapError, match="would fill 60%"):
                fill_file(files / "black.png", files / f"m{cols}.png", out, "mean-fill")
            assert not out.exists()
            fill_file(files / "black.png", files / f"m{cols}.png", out, "mean-fill", force=True)
        else:
            fill_file(files / "black.png", files / f"m{cols}.png", out, "mean-fill")
        assert out.exists()
    assert MAX_HOLE_SHARE == 0.60


def test_a_jpeg_mask_with_a_threshold_fills_as_its_png(files, capsys):
    code, err = run(
        [
            "fill",
            files / "in.png",
            "-m",
            files / "mask.jpg",
            "-o",
            files / "j.png",
            "--model",
            "opencv-telea",
            "--mask-threshold",
            "127",
        ],
        capsys,
    )
    assert code == 0 and "warning" not in err, err
    fill_file(files / "in.png", files / "mask.png", files / "p.png", "opencv-telea")
    assert np.array_equal(np.asarray(Image.open(files / "j.png")), np.asarray(Image.open(files / "p.png")))
    # without the threshold the JPEG's speckles are hole too: a different picture, and a warning
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.jpg", "-o", files / "n.png", "--model", "opencv-telea"], capsys
    )
    assert code == 0 and "--mask-threshold" in err
    assert not np.array_equal(np.asarray(Image.open(files / "n.png")), np.asarray(Image.open(files / "p.png")))


def test_invert_and_threshold_together_in_the_python_api(files):
    fill_file(
        files / "in.png", files / "inverted.png", files / "a.png", "opencv-telea", invert_mask=True, mask_threshold=127
    )
    fill_file(files / "in.png", files / "mask.png", files / "b.png", "opencv-telea")
    assert np.array_equal(np.asarray(Image.open(files / "a.png")), np.asarray(Image.open(files / "b.png")))
    for bad in (-1, 256, 1.5, True):
        with pytest.raises(FillgapError, match="0 to 255"):
            fill_file(files / "in.png", files / "mask.png", files / "c.png", "opencv-telea", mask_threshold=bad)


def test_a_threshold_out_of_range_is_a_usage_error(files, capsys):
    code, err = run(
        ["fill", files / "in.png", "-m", files / "mask.png", "-o", files / "o.png", "--mask-threshold", "300"], capsys
    )
    assert code == 2 and "--mask-threshold" in one_line(err)


def test_a_folder_run_fails_only_the_picture_with_a_bad_mask(files, capsys):
    imgs, masks = files / "imgs", files / "masks"
    imgs.mkdir(), masks.mkdir()
    for name, m in (("good", "mask.png"), ("bad", "inverted.png")):
        (imgs / f"{name}.png").write_bytes((files / "in.png").read_bytes())
        (masks / f"{name}.png").write_bytes((files / m).read_bytes())
    code, err = run(["fill", imgs, "--mask-dir", masks, "-o", files / "out", "--model", "opencv-telea"], capsys)
    assert code == 3 and "--invert-mask" in err
    assert (files / "out" / "good.png").exists() and not (files / "out" / "bad.png").exists()


def test_what_counts_as_a_mask(photo):
    h, w = photo.shape[:2]
    stroke = np.zeros((h, w), np.float32)
    stroke[40:44, 10:120] = 1.0
    stroke[39, 10:120] = stroke[44, 10:120] = 0.5  # anti-aliased edge
    noisy = np.clip(stroke + np.random.default_rng(0).uniform(0, 30 / 255, (h, w)), 0, 1)  # JPEG-like noise
    assert mask_problem(stroke) is None
    assert "would fill 100%" in mask_problem(noisy)  # every speckle above black is hole ...
    assert mask_problem((noisy > 0.5).astype(np.float32)) is None  # ... a threshold cleans it
    grey = photo.mean(axis=2).astype(np.float32) / 255
    assert "looks like a photo" in mask_problem(grey)
    # judged before the threshold: thresholding a photo does not make it a mask
    assert "looks like a photo" in mask_problem((grey > 0.9).astype(np.float32), original=grey)
    flat = np.full((h, w), 0.5, np.float32)  # a flat soft blend: grey, few levels
    assert "looks like a photo" not in mask_problem(flat)
    check_mask(grey, force=True)  # force: nothing refused


def test_inpaint_on_arrays_refuses_nothing_new(photo):
    # the library call keeps its behaviour: a full mask and a photo-like mask are filled as before
    full = np.full(photo.shape[:2], 255, np.uint8)
    assert (inpaint(photo, full, "mean-fill") == 128).all()
    assert inpaint(photo, photo.mean(axis=2).astype(np.uint8), "mean-fill").shape == photo.shape


@pytest.mark.parametrize("through", ["local files", "uris"])
def test_the_ray_engines_rows_check_masks_too(files, monkeypatch, through):
    pytest.importorskip("pyarrow")
    import fillgap.engines.ray as ray_engine

    if through == "uris":  # every path read and written through pyarrow, as a remote URI would be
        monkeypatch.setattr(ray_engine, "local_path", lambda p: None)
    settings = dict(strategy="auto", max_side=None, blend="hard", invert_mask=False, force=False, mask_threshold=None)
    status, reason = ray_engine.fill_one(
        str(files / "in.png"), str(files / "inverted.png"), str(files / "r.png"), "opencv-telea", settings=settings
    )
    assert status == "failed" and "--invert-mask" in reason and not (files / "r.png").exists()
    status, reason = ray_engine.fill_one(
        str(files / "in.png"),
        str(files / "inverted.png"),
        str(files / "r.png"),
        "opencv-telea",
        settings={**settings, "invert_mask": True},
    )
    assert status == "written", reason
    fill_file(files / "in.png", files / "mask.png", files / "p.png", "opencv-telea")
    assert np.array_equal(np.asarray(Image.open(files / "r.png")), np.asarray(Image.open(files / "p.png")))
