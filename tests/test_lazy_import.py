"""Start-up without torch: the CLI's quick answers and classical fills never load it, and the numpy
route they take through ``fillgap.fill.inpaint`` gives the bytes the tensor route gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap.fill import array_route, composite, inpaint
from fillgap.fill.plan import Window
from fillgap.fill.tensors import round_to_uint8_
from fillgap.methods import FillMethod, get_method

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Runs the CLI in a fresh interpreter; prints its exit code and whether torch got loaded.
_PROBE = """
import json, sys
from fillgap.cli import main
code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def _cli(argv) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([str(a) for a in argv])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lazy")
    img = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(img).save(d / "in.png")
    mask = np.zeros((64, 80), np.uint8)
    mask[20:40, 10:70] = 255
    Image.fromarray(mask).save(d / "mask.png")
    return d


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["fill", "--help"]], ids=" ".join)
def test_quick_answers_load_no_torch(argv):
    r = _cli(argv)
    assert r["code"] == 0 and not r["torch"], r


@pytest.mark.parametrize("case", ["missing file", "bad strategy", "unknown method"])
def test_user_errors_load_no_torch(files, case):
    argv = {
        "missing file": ["fill", files / "nope.png", "-m", files / "mask.png", "-o", files / "o.png"],
        "bad strategy": [
            "fill",
            files / "in.png",
            "-m",
            files / "mask.png",
            "-o",
            files / "o.png",
            "--strategy",
            "sideways",
        ],
        "unknown method": [
            "fill",
            files / "in.png",
            "-m",
            files / "mask.png",
            "-o",
            files / "o.png",
            "--model",
            "opencv-teleaa",
        ],
    }[case]
    r = _cli(argv)
    assert r["code"] == 1 and not r["torch"], r
    assert "fillgap: error:" in r["stderr"]
    assert not (files / "o.png").exists()


def test_telea_fill_loads_no_torch_and_a_scaled_one_does(files):
    out = files / "telea.png"
    r = _cli(["fill", files / "in.png", "-m", files / "mask.png", "-o", out, "--model", "opencv-telea"])
    assert r["code"] == 0 and not r["torch"], r
    # The same fill with a working size below the window's: resampled by torch, so torch loads
    # (the probe can see it) and, Telea's hole being small, the fill still happens.
    scaled = files / "telea-scaled.png"
    r = _cli(
        [
            "fill",
            files / "in.png",
            "-m",
            files / "mask.png",
            "-o",
            scaled,
            "--model",
            "opencv-telea",
            "--strategy",
            "resize",
            "--max-side",
            "32",
        ]
    )
    assert r["code"] == 0 and r["torch"], r
    src, a, b = (np.asarray(Image.open(p)) for p in (files / "in.png", out, scaled))
    hole = np.asarray(Image.open(files / "mask.png")) > 0
    assert np.array_equal(a[~hole], src[~hole]) and not np.array_equal(a[hole], src[hole])
    assert not np.array_equal(a, b)


class TensorRoute(FillMethod):
    """A classical method seen only through ``fill`` on tensors: the route every method took before."""

    def __init__(self, inner):
        self.inner, self.name, self.kind, self.max_side = inner, inner.name, inner.kind, inner.max_side

    def fill(self, image, hole):
        return self.inner.fill(image, hole)


def _pictures():
    from fillgap.data import bundled_photos

    photo = bundled_photos("test")[0]
    g = np.random.default_rng(3)
    noise = g.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    return {"photo": photo[:160, :200].copy(), "wide": photo[:90, :700].copy(), "noise": noise}


def _masks(shape, rng):
    h, w = shape
    box = np.zeros((h, w), np.uint8)
    box[h // 4 : h // 2, w // 5 : w // 2] = 255
    soft = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[:h, :w]
    soft[:] = np.clip(1.3 - np.hypot(yy - h / 2, xx - w / 3) / (min(h, w) / 4), 0, 1)  # grey rim
    speck = (rng.random((h, w)) < 0.01).astype(np.uint8) * 180
    full = np.full((h, w), 255, np.uint8)
    return {"box": box, "soft": soft, "speck": speck, "full": full}


def test_a_telea_folder_run_loads_no_torch_and_writes_the_single_fills_bytes(files, tmp_path):
    """The folder engine fills a classical method's pictures on numpy arrays, as a one-file fill does."""
    pictures, masks = tmp_path / "in", tmp_path / "masks"
    pictures.mkdir(), masks.mkdir()
    for name in ("a.png", "b.png"):
        (pictures / name).write_bytes((files / "in.png").read_bytes())
        (masks / name).write_bytes((files / "mask.png").read_bytes())
    r = _cli(["fill", pictures, "--mask-dir", masks, "-o", tmp_path / "out", "--model", "opencv-telea"])
    assert r["code"] == 0 and not r["torch"], r
    single = tmp_path / "single.png"
    assert (
        _cli(["fill", files / "in.png", "-m", files / "mask.png", "-o", single, "--model", "opencv-telea"])["code"] == 0
    )
    for name in ("a.png", "b.png"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / name)), np.asarray(Image.open(single)))


@pytest.mark.parametrize("name", ["opencv-telea", "opencv-ns", "opencv-fsr", "mean-fill"])
def test_numpy_route_gives_the_tensor_routes_bytes(name, rng, monkeypatch):
    method, reference = get_method(name), TensorRoute(get_method(name))
    calls = []
    fill_array = method.fill_array
    monkeypatch.setattr(method, "fill_array", lambda *a: calls.append(1) or fill_array(*a))
    pictures = _pictures()
    slow = name == "opencv-fsr"  # about 0.2 s a fill: fewer cases
    # every mask, strategy and blend at native resolution (the numpy route) ...
    native = [
        (p, m, st, bl, None)
        for p in ("photo",) + (() if slow else ("noise",))
        for m in ("box", "soft") + (() if slow else ("speck", "full"))
        for st in ("auto", "crop", "resize", "cra")
        for bl in ("hard", "soft")
    ]
    # ... and windows beyond the working size, where both routes resample with torch
    scaled = [
        ("wide", m, st, "soft", ms) for m in ("box", "soft") for st in ("crop", "cra") for ms in (None, 64) if not slow
    ]
    for pname, mname, strategy, blend, max_side in native + scaled:
        img = pictures[pname]
        mask = _masks(img.shape[:2], rng)[mname]
        kw = dict(strategy=strategy, blend=blend, max_side=max_side)
        got, want = inpaint(img, mask, method, **kw), inpaint(img, mask, reference, **kw)
        assert np.array_equal(got, want), (pname, mname, kw)
    assert len(calls) >= len(native)  # the numpy route was taken (once per window)


def test_array_route_is_taken_only_at_native_resolution():
    telea, fsr = get_method("opencv-telea"), get_method("opencv-fsr")
    win = Window(0, 600, 0, 900)
    assert array_route(telea, win, "crop") and array_route(telea, win, "resize")
    assert not array_route(telea, win, "cra")  # cra fills at 512 px, then aggregates
    assert not array_route(telea, win, "crop", max_side=512)
    assert array_route(fsr, Window(0, 1024, 0, 10), "crop") and not array_route(fsr, Window(0, 1025, 0, 10), "crop")
    assert not array_route(TensorRoute(telea), win, "crop")  # networks and other methods: tensors


def test_composite_of_a_uint8_fill_equals_its_float_form():
    # Every fill value against every weight class: full (1), none (0) and 64 grey levels.
    v = np.arange(256, dtype=np.uint8)
    fill = np.stack([np.tile(v, (66, 1))] * 3, axis=2)  # 66 x 256 x 3
    image = np.ascontiguousarray(fill[:, ::-1])  # another value under each
    alpha = np.repeat(np.r_[0.0, 1.0, np.linspace(0.01, 0.99, 64)].astype(np.float32)[:, None], 256, axis=1)
    win = Window(0, 66, 0, 256)
    a, b = image.copy(), image.copy()
    composite(a, image, alpha, win, fill)
    composite(b, image, alpha, win, torch.from_numpy(fill).permute(2, 0, 1).float().div_(255.0))
    assert np.array_equal(a, b)
    assert np.array_equal(a[1], fill[1]) and np.array_equal(a[0], image[0])
    # the premise, for all 256 values: the float route's v / 255 * 255 is v, and rounds to v
    v = torch.arange(256).float()
    assert torch.equal(v.div(255.0).mul_(255.0), v)
    assert torch.equal(round_to_uint8_(v.div(255.0)), v.to(torch.uint8))


def test_the_numpy_route_leaves_the_callers_picture_alone(photo):
    before = photo.copy()
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[10:50, 20:80] = 255
    inpaint(photo, mask, "mean-fill")
    assert np.array_equal(photo, before)


_THREADS_PROBE = """
import sys
import numpy as np
from fillgap.runtime.threads import set_threads
from fillgap.fill import inpaint
set_threads(1)
assert "torch" not in sys.modules
img = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
mask = np.zeros((80, 80), np.uint8); mask[20:60, 20:60] = 255
inpaint(img, mask, "opencv-telea", max_side=32)  # scaled: torch loads inside the fill
import torch
print(torch.get_num_threads())
"""


def test_thread_count_reaches_torch_loaded_after_set_threads():
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", _THREADS_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
