"""The evaluation protocol, its metrics, the peers, and `fillgap eval` end to end."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap.classical import CLASSICAL
from fillgap.cli import main
from fillgap.data.photos import PHOTO_LIST
from fillgap.errors import FillgapError
from fillgap.evaluate import (EvalRun, bucket_label, build_methods, load_protocol, make_cases, masks_checksum,
                              parse_method_list, render_markdown, run_protocol, square)
from fillgap.masks import hole_ratio
from fillgap.metrics import image_metrics, ssim_map


# -- metrics against known values ---------------------------------------------------------------
def _pair(offset: int, size: int = 64):
    target = np.full((size, size, 3), 100, np.uint8)
    mask = np.zeros((size, size), np.float32)
    mask[16:32, 8:40] = 1
    pred = target.copy()
    pred[mask > 0] += offset
    return pred, target, mask


def test_psnr_and_l1_of_a_known_error():
    pred, target, mask = _pair(51)  # 51 / 255 = 0.2 on every hole pixel and channel
    m = image_metrics(pred, target, mask)
    frac = mask.mean()
    assert m["hole_psnr"] == pytest.approx(10 * math.log10(1 / 0.04), abs=1e-6)  # 13.98 dB
    assert m["psnr"] == pytest.approx(10 * math.log10(1 / (0.04 * frac)), abs=1e-6)
    assert m["hole_l1"] == pytest.approx(0.2, abs=1e-9)
    assert m["l1"] == pytest.approx(0.2 * frac, abs=1e-9)


def test_identical_pictures_score_perfect():
    pred, target, mask = _pair(0, size=192)
    target = np.random.default_rng(0).integers(0, 256, target.shape, dtype=np.uint8)
    m = image_metrics(target, target, mask)
    assert m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["hole_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["psnr"] == m["hole_psnr"] == 100.0  # capped, stays finite in JSON
    assert m["l1"] == m["hole_l1"] == 0.0


def test_ms_ssim_is_skipped_below_its_minimum_size():
    pred, target, mask = _pair(10, size=64)
    assert image_metrics(pred, target, mask)["ms_ssim"] is None


def test_psnr_and_ssim_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = np.random.default_rng(3)
    target = g.integers(0, 256, (48, 56, 3), dtype=np.uint8)
    pred = np.clip(target.astype(int) + g.integers(-40, 41, target.shape), 0, 255).astype(np.uint8)
    m = image_metrics(pred, target, np.ones((48, 56), np.float32))
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=255), abs=1e-6)
    assert m["hole_psnr"] == pytest.approx(m["psnr"], abs=1e-9)  # the whole picture is the hole
    sk = structural_similarity(target / 255.0, pred / 255.0, data_range=1.0, channel_axis=-1,
                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    p = torch.from_numpy(pred / 255.0).permute(2, 0, 1)[None]
    t = torch.from_numpy(target / 255.0).permute(2, 0, 1)[None]
    _, smap = ssim_map(p, t)
    # skimage leaves out a 5-pixel border; torchmetrics' map covers it by reflect padding
    assert float(smap[5:-5, 5:-5].mean()) == pytest.approx(sk, abs=1e-5)
    assert m["ssim"] == pytest.approx(sk, abs=0.02)


def test_hole_ssim_looks_at_the_hole_only():
    g = np.random.default_rng(4)
    target = g.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[:, :32] = 1
    pred = target.copy()
    pred[:, :32] = 128  # destroyed in the hole, untouched outside
    m = image_metrics(pred, target, mask)
    assert m["hole_ssim"] < 0.1 < m["ssim"]
    outside = image_metrics(target, target, 1 - mask)
    assert outside["hole_ssim"] == pytest.approx(1.0, abs=1e-6)


# -- the protocol -------------------------------------------------------------------------------
def test_v1_uses_exactly_the_test_split():
    with open(PHOTO_LIST, newline="") as fh:
        rows = list(csv.DictReader(fh))
    test = [r["name"] for r in rows if r["split"] == "test"]
    protocol = load_protocol("v1")
    assert sorted(protocol.images.names) == sorted(test) and len(test) == 8
    assert protocol.images.split == "test"
    assert not set(test) & {r["name"] for r in rows if r["split"] != "test"}


@pytest.mark.parametrize("name,size", [("v1", 256), ("v1", 512), ("bundled", 128), ("bundled", 256)])
def test_masks_match_the_stored_checksum(name, size):
    """Any change to the mask generator (or the draw rule) changes these masks: a new protocol version."""
    protocol = load_protocol(name)
    cases = make_cases(protocol, size)
    assert masks_checksum(cases) == protocol.masks_sha256[str(size)]
    assert len(cases) == len(protocol.images.names) * sum(len(b) for b in protocol.cells.values())
    for case in cases:
        lo, hi = protocol.buckets[case.bucket]
        assert lo <= hole_ratio(case.mask) < hi, case.key
        assert case.mask.shape == (size, size) and set(np.unique(case.mask)) <= {0.0, 1.0}


def test_masks_are_the_same_twice_and_differ_per_picture():
    protocol = load_protocol("bundled")
    a, b = make_cases(protocol, 128), make_cases(protocol, 128)
    assert [c.key for c in a] == [c.key for c in b]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a, b))
    per_picture = {c.image: c.mask for c in a if c.kind == "box" and c.bucket == 2}
    first, second = list(per_picture.values())[:2]
    assert not np.array_equal(first, second)


def test_unreachable_bucket_is_an_error_naming_the_cell(tmp_path):
    spec = json.loads(load_protocol("bundled").model_dump_json())
    spec.update(cells={"thin": [4]}, max_draws=20, grid=[])
    path = tmp_path / "p.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(FillgapError, match="no thin mask with a 40-50 % hole after 20 draws"):
        make_cases(load_protocol(path), 64)


def test_unknown_protocol_and_size_are_refused():
    with pytest.raises(FillgapError, match="unknown protocol 'v9'.*bundled"):
        load_protocol("v9")
    with pytest.raises(FillgapError, match="sizes 128, 256, 512, not 100"):
        run_protocol(load_protocol("bundled"), 100, build_methods(["mean-fill"]))


def test_missing_photos_say_how_to_prepare_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FILLGAP_DATA", str(tmp_path))
    with pytest.raises(FillgapError, match="fillgap data prepare --sets photos"):
        run_protocol(load_protocol("v1"), 256, build_methods(["mean-fill"]))


def test_square_resizes_the_short_side_and_crops_the_centre():
    img = np.zeros((200, 400, 3), np.uint8)
    img[:, 200:] = 255  # left half black, right half white
    out = square(img, 100)  # 200x400 -> 100x200, centre columns 50..150
    assert out.shape == (100, 100, 3)
    assert (out[:, :48] == 0).all() and (out[:, 52:] == 255).all()
    small = square(np.full((40, 60, 3), 7, np.uint8), 64)  # enlarged, not padded
    assert small.shape == (64, 64, 3) and (small == 7).all()


# -- peers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CLASSICAL))
def test_each_peer_fills_a_flat_picture_with_its_colour(name):
    image = np.empty((24, 32, 3), np.uint8)
    image[:] = (40, 120, 200)
    mask = np.zeros((24, 32), np.float32)
    mask[8:16, 10:20] = 1
    marked = image.copy()
    marked[mask > 0] = (255, 0, 255)  # what was there must not leak into the fill
    out = CLASSICAL[name](marked, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out[mask > 0].astype(int) - (40, 120, 200)).max() <= 2


def test_method_selection():
    assert parse_method_list(None) is None
    assert parse_method_list(["opencv-ns,mean-fill", "opencv-telea"]) == ["opencv-ns", "mean-fill", "opencv-telea"]
    assert parse_method_list(["none"]) == []
    assert [m.name for m in build_methods(["mean-fill"])] == ["mean-fill"]
    with pytest.raises(FillgapError, match="unknown method 'lama'"):
        build_methods(["lama"])
    with pytest.raises(FillgapError, match="no methods"):
        build_methods([])


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture
def tiny_checkpoint(tmp_path):
    from fillgap.checkpoint import save_checkpoint
    from fillgap.models import create_model

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, create_model("ffc-tiny"))
    return path


def test_fillgap_eval_bundled_end_to_end(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "report"
    args = ["eval", "--protocol", "bundled", "--size", "128", "--model", str(tiny_checkpoint),
            "--methods", "mean-fill", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "eval-bundled-128.json").read_text())
    assert [m["name"] for m in result["methods"]] == ["mean-fill", "tiny"]
    assert len(result["cases"]) == 48 and result["protocol"]["matches_protocol"]
    for case in result["cases"]:
        for method in ("mean-fill", "tiny"):
            r = case["results"][method]
            assert r["seconds"] >= 0 and 0 <= r["hole_ssim"] <= 1 and r["hole_psnr"] < r["psnr"]
    summary = result["summary"]
    assert set(summary["by_bucket"]) == {bucket_label(b) for b in load_protocol("bundled").buckets}
    assert summary["by_kind"]["thin"]["tiny"]["n"] == 6  # 3 pictures x 2 buckets
    # ffc-tiny starts from a Telea fill: even untrained it beats a flat colour
    assert summary["overall"]["tiny"]["hole_psnr"] > summary["overall"]["mean-fill"]["hole_psnr"]
    md = (out / "eval-bundled-128.md").read_text()
    assert "| tiny |" in md and "40-50 %" in md and "Warning" not in md
    grid = Image.open(out / "eval-bundled-128.png")
    assert grid.size == (128 * 4, 22 + 6 * 128)  # input, 2 methods, original; 6 rows under a label strip

    capsys.readouterr()
    assert main(args) == 1  # never overwrite a report unless asked
    err = capsys.readouterr().err
    assert "output exists" in err and len(err.strip().splitlines()) == 1


def test_a_generator_change_is_flagged_in_the_report(tmp_path):
    spec = json.loads(load_protocol("bundled").model_dump_json())
    spec["images"]["names"] = spec["images"]["names"][:1]
    spec.update(cells={"box": [2]}, grid=[{"image": spec["images"]["names"][0], "kind": "box", "bucket": 2}],
                masks_sha256={"128": "0" * 64}, images_sha256={})
    path = tmp_path / "one.json"
    path.write_text(json.dumps(spec))
    run = run_protocol(load_protocol(path), 128, build_methods(["mean-fill", "opencv-telea"]))
    assert isinstance(run, EvalRun) and len(run.stale) == 1 and "masks differ" in run.stale[0]
    assert not run.result["protocol"]["matches_protocol"]
    assert "Warning" in render_markdown(run.result)
    assert run.grid.shape == (22 + 128, 128 * 4, 3)
