"""Batch filling of folders: same results as fillgap.inpaint, resumable after a kill, inputs untouched."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap import inpaint, load_model
from fillgap.engines.plan import plan_folder
from fillgap.engines.common import _output_lock
from fillgap.engines.local import fill_folder
from fillgap.checkpoint import save_checkpoint
from fillgap.errors import FillgapError
from fillgap.imageio import read_image, read_mask
from fillgap.models import create_model


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """ffc-tiny with a non-zero head, so the network (not only its Telea start) shapes the fill."""
    torch.manual_seed(0)
    net = create_model("ffc-tiny")
    torch.nn.init.normal_(net.head.weight, std=0.05)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, net)
    return path


def make_folder(root, n, size=64, seed=0):
    """n pictures and masks: half the holes at one place (they batch), half anywhere, grey edges, some empty."""
    rng = np.random.default_rng(seed)
    images, masks = root / "in", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = np.stack([np.sin(xx * (i % 7 + 1) * 3 + c + 2 * yy) for c in range(3)], -1) * 100 + 128
        img = (img + rng.normal(0, 10, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(images / f"{i:03d}.png")
        m = np.zeros((size, size), np.uint8)
        if i % 10 != 9:
            top, left = (10, 12) if i % 2 else tuple(int(v) for v in rng.integers(0, size - 20, 2))
            m[top : top + 14, left : left + 18] = 255
            m[top + 14, left : left + 18] = 128
        Image.fromarray(m).save(masks / f"{i:03d}.png")
    return images, masks


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def check_outputs(images, masks, out, net):
    names = sorted(p.name for p in images.iterdir())
    # nothing else: no temp file; the lock file stays (deleting a lock file races with the next run)
    assert sorted(p.name for p in out.iterdir() if p.name != ".fillgap-lock") == names
    for name in names:
        expected = inpaint(read_image(images / name), read_mask(masks / name), net)
        np.testing.assert_array_equal(read_image(out / name), expected, err_msg=name)


def test_batched_folder_equals_inpaint_and_lists_bad_files(tmp_path, model_path):
    images, masks = make_folder(tmp_path, 12)
    (images / "broken.png").write_bytes(b"not a picture")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(masks / "broken.png")
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(images / "nomask.png")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(images / "wrongsize.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(masks / "wrongsize.png")
    net = load_model(model_path)
    report = fill_folder(images, masks, tmp_path / "out", net, workers=2, batch_size=4)
    failed = {p.name: why for p, why in report.failed}
    assert set(failed) == {"broken.png", "nomask.png", "wrongsize.png"}
    assert "no mask" in failed["nomask.png"] and "40x40" in failed["wrongsize.png"]
    assert len(report.written) == 12
    for name in sorted(p.name for p in images.iterdir() if p.name not in failed):
        expected = inpaint(read_image(images / name), read_mask(masks / name), net)
        np.testing.assert_array_equal(read_image(tmp_path / "out" / name), expected, err_msg=name)
    # an empty mask gives the input file itself
    assert (tmp_path / "out" / "009.png").read_bytes() == (images / "009.png").read_bytes()
    again = fill_folder(images, masks, tmp_path / "out", net, workers=2, batch_size=4)
    assert len(again.skipped_existing) == 12 and not again.written


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, model_path):
    images, masks = make_folder(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    with _output_lock(out):
        with pytest.raises(FillgapError, match="another fillgap run"):
            fill_folder(images, masks, out, load_model(model_path))
    assert [p.name for p in out.iterdir()] == [".fillgap-lock"]  # the lock file stays, nothing else


def test_never_writes_over_an_input_even_with_overwrite(tmp_path, model_path):
    images, masks = tmp_path / "in", tmp_path / "masks"
    (images / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    for rel in ("x.png", "sub/x.png"):
        Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(images / rel)
        m = np.zeros((40, 40), np.uint8)
        m[5:15, 5:15] = 255
        Image.fromarray(m).save(masks / rel)
    before = (masks / "sub" / "x.png").read_bytes()
    # The output of in/x.png would be masks/sub/x.png: the mask of in/sub/x.png.
    report = fill_folder(images, masks, masks / "sub", load_model(model_path), overwrite=True)
    assert [(p.name, "input file" in why) for p, why in report.failed] == [("x.png", True)]
    assert report.written == [masks / "sub" / "sub" / "x.png"]
    assert (masks / "sub" / "x.png").read_bytes() == before


def test_plan_finds_masks_beside_pictures_and_dotted_names(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("a.v2.jpg", "a.v2_mask.png", "b.png", "b_mask.PNG", "c.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name, format="PNG")
    plan = {img.name: (msk.name if msk else None) for img, msk, _ in plan_folder(folder, folder, tmp_path / "o")}
    assert plan == {"a.v2.jpg": "a.v2_mask.png", "b.png": "b_mask.PNG", "c.png": None}


def _fill_cmd(images, masks, out, model_path):
    return [
        sys.executable,
        "-m",
        "fillgap",
        "fill",
        str(images),
        "--mask-dir",
        str(masks),
        "-o",
        str(out),
        "--model",
        str(model_path),
        "--workers",
        "2",
        "--batch-size",
        "4",
    ]


def _count(out):
    return sum(p.suffix == ".png" and not p.name.startswith(".") for p in out.iterdir()) if out.is_dir() else 0


def _interrupt_after_new_outputs(cmd, out, sig, env):
    """Start the run; send ``sig`` as soon as it has written an output of its own."""
    before = _count(out)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300  # a busy machine can take minutes to start the run
    while time.time() < deadline and proc.poll() is None and _count(out) <= before:
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_folder_of_50_killed_midway_resumes_to_50_correct_outputs(tmp_path, model_path):
    images, masks = make_folder(tmp_path, 50)
    out = tmp_path / "out"
    inputs_before = {**digest(images), **{"m/" + k: v for k, v in digest(masks).items()}}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _fill_cmd(images, masks, out, model_path)

    # SIGTERM: the writes in flight finish, the run says how to resume, exit code 130.
    code, err = _interrupt_after_new_outputs(cmd, out, signal.SIGTERM, env)
    after_term = sorted(p for p in out.iterdir() if p.name != ".fillgap-lock")
    assert code == 130, err
    assert "run the same command again" in err and "Traceback" not in err
    assert 0 < len(after_term) < 50 and all(p.suffix == ".png" for p in after_term)

    # SIGKILL of the resumed run: nothing is cleaned up; a temp file of a cut write may stay.
    code, _ = _interrupt_after_new_outputs(cmd, out, signal.SIGKILL, env)
    assert code == -signal.SIGKILL
    done = [p for p in out.iterdir() if p.suffix == ".png" and not p.name.startswith(".")]
    assert len(after_term) < len(done) < 50
    (out / ".007.png.deadbeef.fillgap-tmp").write_bytes(b"half a picture")  # as a SIGKILL can leave

    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert f"already there {len(done)}" in run.stdout and f"filled {50 - len(done)}" in run.stdout
    check_outputs(images, masks, out, load_model(model_path))  # exactly the 50 pictures, all right
    assert {**digest(images), **{"m/" + k: v for k, v in digest(masks).items()}} == inputs_before
