"""Folder runs tell the truth: pixels outside the hole kept, failures as they happen and in a file,
distinct exit codes, skipped entries named, progress lines in a log."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap.engines.local import fill_folder
from fillgap.checkpoint import load_model, save_checkpoint
from fillgap.cli import main
from fillgap.engines.common import FAILURES_NAME, read_failures
from fillgap.imageio import read_image, read_mask
from fillgap.models import create_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, create_model("ffc-tiny"))
    return path


def make_pictures(root, names, size=40):
    rng = np.random.default_rng(0)
    images, masks = root / "in", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for name in names:
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # noise: JPEG changes it a lot
        Image.fromarray(img).save(images / name, quality=80)
        m = np.zeros((size, size), np.uint8)
        m[10:20, 12:24] = 255
        Image.fromarray(m).save(masks / (name.rsplit(".", 1)[0] + ".png"))
    return images, masks


def test_jpeg_inputs_come_back_as_png_with_every_pixel_outside_the_hole_kept(tmp_path, model_path):
    images, masks = make_pictures(tmp_path, ["a.jpg", "b.JPEG", "c.png", "d.webp"])
    report = fill_folder(images, masks, tmp_path / "out", load_model(model_path))
    assert sorted(p.name for p in report.written) == ["a.png", "b.png", "c.png", "d.png"]
    for src, out in (("a.jpg", "a.png"), ("b.JPEG", "b.png"), ("d.webp", "d.png")):
        before, after = read_image(images / src), read_image(tmp_path / "out" / out)
        keep = read_mask(masks / out) == 0
        np.testing.assert_array_equal(after[keep], before[keep])
        assert (after[~keep] != before[~keep]).any()  # the hole itself was filled
    # Asking for JPEG is allowed, and then the pixels outside the hole do change.
    jpg = fill_folder(images, masks, tmp_path / "jpg", load_model(model_path), output_format="jpg")
    assert sorted(p.name for p in jpg.written) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    keep = read_mask(masks / "a.png") == 0
    assert (read_image(tmp_path / "jpg" / "a.jpg")[keep] != read_image(images / "a.jpg")[keep]).any()


def test_two_pictures_with_one_output_name_fail_instead_of_overwriting(tmp_path, model_path):
    images, masks = make_pictures(tmp_path, ["a.png", "a.jpg"])
    report = fill_folder(images, masks, tmp_path / "out", load_model(model_path))
    assert [p.name for p in report.written] == ["a.png"]
    assert [(p.name, "also the output of" in why) for p, why in report.failed] == [("a.png", True)] or [
        (p.name, "also the output of" in why) for p, why in report.failed
    ] == [("a.jpg", True)]


def _cli(capsys, *args):
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_failures_as_they_happen_in_a_file_and_exit_codes(tmp_path, model_path, capsys):
    images, masks = make_pictures(tmp_path, [f"{i}.png" for i in range(4)])
    (images / "broken.png").write_bytes(b"not a picture")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(masks / "broken.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "nomask.png")
    (images / "holiday.jpg").mkdir()  # a folder named like a picture
    out = tmp_path / "out"
    events = []
    fill_folder(images, masks, out, load_model(model_path), on_event=lambda kind, p, why: events.append((kind, p.name)))
    assert sorted(events) == [("failed", "broken.png"), ("failed", "nomask.png"), ("skipped", "holiday.jpg")]

    code, stdout, err = _cli(
        capsys, "fill", images, "--mask-dir", masks, "-o", tmp_path / "out2", "--model", model_path
    )
    assert code == 3
    assert "fillgap: failed: " in err and "broken.png" in err and "nomask.png: no mask" in err
    assert "fillgap: skipped: " in err and "holiday.jpg: a folder, not a picture" in err
    assert "Traceback" not in err
    rows = read_failures(tmp_path / "out2")
    assert sorted((p.rsplit("/", 1)[-1], "no mask" in why) for p, why in rows) == [
        ("broken.png", False),
        ("nomask.png", True),
    ]
    assert "filled 4" in stdout and "failed 2" in stdout and "skipped 1" in stdout and FAILURES_NAME in stdout
    assert re.match(r"fillgap: 1/6 \(17 %\), 1 failed", stdout)  # a progress line: stdout is no terminal here

    # Rerun: the 4 are there, the 2 still fail, the failures file is this run's.
    code, stdout, err = _cli(
        capsys, "fill", images, "--mask-dir", masks, "-o", tmp_path / "out2", "--model", model_path
    )
    assert code == 3 and "already there 4" in stdout and len(read_failures(tmp_path / "out2")) == 2

    (images / "broken.png").unlink()
    (images / "nomask.png").unlink()
    code, stdout, err = _cli(
        capsys, "fill", images, "--mask-dir", masks, "-o", tmp_path / "out2", "--model", model_path
    )
    assert code == 0 and "already there 4" in stdout

    code, _, err = _cli(
        capsys, "fill", images, "--mask-dir", tmp_path / "nowhere", "-o", tmp_path / "o3", "--model", model_path
    )
    assert code == 1 and "mask folder not found" in err and not (tmp_path / "o3").exists()
    code, _, err = _cli(capsys, "fill", images, "--mask-dir", masks, "-o", tmp_path / "o4", "--no-such-flag")
    assert code == 2 and not (tmp_path / "o4").exists()


def test_progress_lines_in_a_log(tmp_path, model_path, capsys):
    images, masks = make_pictures(tmp_path, [f"{i}.png" for i in range(3)])
    fill_folder(images, masks, tmp_path / "out", load_model(model_path), progress="lines", progress_every=0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fillgap: 0/3 (0 %), 0 failed")
    assert lines[-1].startswith("fillgap: 3/3 (100 %), 0 failed")


def test_failures_file_is_csv_with_path_and_reason(tmp_path, model_path):
    images, masks = make_pictures(tmp_path, ["ok.png"])
    (images / "bad, name.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(masks / "bad, name.png")
    fill_folder(images, masks, tmp_path / "out", load_model(model_path))
    with open(tmp_path / "out" / FAILURES_NAME, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "reason"] and len(rows) == 2
    assert rows[1][0] == str(images / "bad, name.png") and rows[1][1]


def test_a_manifest_output_that_climbs_out_of_the_output_folder_fails_its_row(tmp_path):
    """README: a relative output is a name in -o. `../x.png` would have written beside -o."""
    from fillgap.engines.common import plan_run

    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "picture,mask,output\n"
        "a.png,ma.png,../escape.png\n"
        "b.png,mb.png,sub/../b-out.png\n"
        f"c.png,mc.png,{tmp_path / 'abs.png'}\n"
    )
    run = plan_run(manifest, None, tmp_path / "out")
    assert [str(p.name) for p, _ in run.failed] == ["a.png"] and "outside -o" in run.failed[0][1]
    outputs = {Path(str(o)).name: Path(str(o)) for _, _, o in run.rows}
    assert outputs["b-out.png"].resolve().parent == (tmp_path / "out").resolve()  # .. inside -o is fine
    assert outputs["abs.png"] == tmp_path / "abs.png"  # absolute: written where it says


def test_one_mask_for_every_picture_of_a_folder(tmp_path, model_path, capsys):
    """--mask with a folder input: the same hole in every picture; a picture of another size fails
    alone (one line naming both sizes) unless --resize-mask scales the mask to it."""
    images, masks = make_pictures(tmp_path, ["a.png", "b.jpg"])
    (images / "sub").mkdir()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(images / "sub" / "c.png")
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(images / "big.png")
    mask = masks / "a.png"
    code, stdout, err = _cli(capsys, "fill", images, "--mask", mask, "-o", tmp_path / "out", "--model", model_path)
    assert code == 3, err
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "a.png",
        "b.png",
        "sub/c.png",
    ]
    keep = read_mask(mask) == 0
    for name, out in (("a.png", "a.png"), ("b.jpg", "b.png"), ("sub/c.png", "sub/c.png")):
        before, after = read_image(images / name), read_image(tmp_path / "out" / out)
        np.testing.assert_array_equal(after[keep], before[keep])
    failed = [line for line in err.splitlines() if line.startswith("fillgap: failed")]
    assert (
        len(failed) == 1
        and "big.png" in failed[0]
        and "40x40" in failed[0]
        and "80x60" in failed[0]
        and "--resize-mask" in failed[0]
    ), err
    assert "Traceback" not in err

    code, stdout, err = _cli(
        capsys, "fill", images, "--mask", mask, "-o", tmp_path / "out", "--model", model_path, "--resize-mask"
    )
    assert code == 0, err
    assert "filled 1" in stdout and "already there 3" in stdout
    assert read_image(tmp_path / "out" / "big.png").shape == (60, 80, 3)


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--mask-dir", "{masks}"], "not both"),
        (["--mask", "{masks}"], "a folder of masks goes to --mask-dir"),
        (["--mask", "{tmp}/nowhere.png"], "mask not found"),
    ],
)
def test_one_mask_for_a_folder_refusals(tmp_path, model_path, capsys, extra, fragment):
    images, masks = make_pictures(tmp_path, ["a.png"])
    args = [a.format(masks=masks, tmp=tmp_path) for a in extra]
    if "--mask-dir" in args:
        args = ["--mask", str(masks / "a.png"), *args]
    code, _, err = _cli(capsys, "fill", images, *args, "-o", tmp_path / "out", "--model", model_path)
    assert code == 1 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_one_mask_kept_in_the_picture_folder_is_not_filled(tmp_path):
    from fillgap.engines.plan import plan_folder

    images, masks = make_pictures(tmp_path, ["a.png", "b.png"])
    (masks / "a.png").rename(images / "logo-mask.png")
    plan = plan_folder(images, images / "logo-mask.png", tmp_path / "out")
    assert [(img.name, msk.name, out.name) for img, msk, out in plan] == [
        ("a.png", "logo-mask.png", "a.png"),
        ("b.png", "logo-mask.png", "b.png"),
    ]


class _Clock:
    """A stand-in for the time module that only moves when told."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def test_time_left_leaves_out_the_model_loading(tmp_path, monkeypatch):
    """20 pictures at 1 s each after 8 s of loading the model and warming up: every estimate
    shown is within 15 % of the truth (counted from the start, the first ones were 3x too long)."""
    import io

    from fillgap.engines import common

    clock = _Clock()
    monkeypatch.setattr(common, "time", clock)
    stream = io.StringIO()
    log = common.RunLog(tmp_path, 20, progress="lines", every=0, stream=stream)
    log.begin(0)
    truths = {}
    for i in range(20):
        clock.now = 8.0 + i  # the first picture comes out after the warm-up, then one a second
        log.written(tmp_path / f"{i}.png")
        truths[i + 1] = 19 - i
    shown = [
        (int(m.group(1)), float(m.group(2)))
        for m in re.finditer(r"fillgap: (\d+)/20 .*about (\d+) s left", stream.getvalue())
    ]
    assert len(shown) >= 15, stream.getvalue()
    for done, left in shown:
        assert abs(left - truths[done]) <= 0.15 * truths[done] + 0.5, (done, left, truths[done])
    assert "fillgap: 1/20 (5 %), 0 failed\n" in stream.getvalue()  # one picture: no pace, no guess


def test_time_left_on_the_bar_ignores_a_burst(tmp_path, monkeypatch, capsys):
    """A batch of 8 finishing at once does not make the next estimate tiny; the bar shows ours."""
    from fillgap.engines import common

    clock = _Clock()
    monkeypatch.setattr(common, "time", clock)
    log = common.RunLog(tmp_path, 40, progress="bar", warmup=8)  # --batch-size 8
    log.begin(0)
    clock.now = 10.0
    for i in range(8):  # the first batch, all at once
        log.written(tmp_path / f"{i}.png")
    assert log.bar.postfix in ("", None)  # the warm-up batch: no estimate yet
    for i in range(8, 16):  # the next batch, 4 s later
        clock.now = 14.0
        log.written(tmp_path / f"{i}.png")
    assert log.bar.postfix == "about 12 s left"  # 24 left at 8 in 4 s: 3 more batches
    log.close()
