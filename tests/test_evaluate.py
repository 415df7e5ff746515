"""The evaluation protocol, its metrics, the peers, and `fillgap eval` end to end."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fillgap.methods import METHODS, classical_names
from fillgap.cli import main
from fillgap.data.photos import PHOTO_LIST
from fillgap.errors import FillgapError
from fillgap.eval import (
    EvalRun,
    bucket_label,
    build_methods,
    load_protocol,
    make_cases,
    masks_checksum,
    parse_method_list,
    render_markdown,
    run_protocol,
)
from fillgap.eval.protocol import square
from fillgap.eval.make_protocol import build_protocol
from fillgap.eval.make_protocol import main as make_protocol_main
from fillgap.masks import hole_ratio
from fillgap.eval.metrics import (
    DETAIL_MIN_STD,
    METRICS,
    checker_energy,
    checker_region,
    hole_checker_ratio,
    hole_detail_ratio,
    image_metrics,
    inner_hole,
    laplacian_std,
    ssim_map,
)


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
    sk = structural_similarity(
        target / 255.0,
        pred / 255.0,
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
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


def _texture(amplitude: float, size: int = 64, seed: int = 0):
    """Grey 128 +- ``amplitude`` of fixed noise, and a 40 x 40 hole."""
    noise = np.random.default_rng(seed).uniform(-1, 1, (size, size))
    grey = np.clip(np.round(128 + amplitude * noise), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.float32)
    mask[12:52, 8:48] = 1
    return np.repeat(grey[..., None], 3, axis=2), mask


def test_hole_detail_ratio_known_answers():
    target, mask = _texture(30)
    flat = np.where(mask[..., None] > 0, 128, target).astype(np.uint8)  # a flat fill, composited
    doubled, _ = _texture(60)
    doubled = np.where(mask[..., None] > 0, doubled, target).astype(np.uint8)
    assert hole_detail_ratio(target, target, mask) == 1.0
    assert image_metrics(target, target, mask)["hole_detail"] == 1.0
    assert hole_detail_ratio(flat, target, mask) == 0.0  # the seam with the textured surroundings is not texture
    assert hole_detail_ratio(doubled, target, mask) == pytest.approx(2.0, abs=0.01)  # the Laplacian is linear
    # luma, not one channel: a texture only in blue counts with BT.601's weight 0.114
    blue = np.full_like(target, 128)
    blue[..., 2] = target[..., 0]
    inner = inner_hole(mask)
    assert laplacian_std(blue, inner) == pytest.approx(0.114 * laplacian_std(target, inner), rel=1e-9)


def test_inner_hole_drops_the_pixels_next_to_kept_ones():
    mask = np.zeros((8, 10), np.float32)
    mask[2:6, 0:5] = 1  # touches the left border
    inner = inner_hole(mask)
    assert inner.sum() == 2 * 4 and inner[3:5, 0:4].all()  # the border column stays: its mirror is hole
    assert not inner_hole(np.eye(8, dtype=np.float32)).any()  # a 1 px stroke has no inside


def test_hole_detail_ratio_is_undefined_for_a_flat_original():
    target, mask = _texture(0)
    noisy, _ = _texture(30)
    assert laplacian_std(target, inner_hole(mask)) < DETAIL_MIN_STD
    assert hole_detail_ratio(noisy, target, mask) is None
    assert image_metrics(noisy, target, mask)["hole_detail"] is None
    assert image_metrics(noisy, noisy, np.zeros_like(mask))["hole_detail"] is None  # no hole
    assert hole_detail_ratio(noisy, noisy, np.eye(64, dtype=np.float32)) is None  # no inner pixel


def test_hole_checker_ratio_known_answers():
    target, mask = _texture(30)
    hole = mask > 0
    assert hole_checker_ratio(target, target, mask) == 1.0
    assert image_metrics(target, target, mask)["hole_checker"] == 1.0 and "hole_checker" in METRICS
    yy, xx = np.mgrid[0:64, 0:64]
    checker = np.where((yy + xx) % 2 == 0, 12, -12)[..., None]  # +-12 grey levels, a 1-pixel grid
    gridded = np.where(hole[..., None], target.astype(int) + checker, target).astype(np.uint8)  # 116..170: no clipping
    assert hole_checker_ratio(gridded, target, mask) > 1.5
    # the filter is g(y, x) - g(y, x+1) - g(y+1, x) + g(y+1, x+1): on a pure grid of +-a it is +-4a everywhere
    grid_only = np.repeat((128 + checker).astype(np.uint8), 3, axis=2)
    assert checker_energy(grid_only, hole) == pytest.approx((4 * 12 / 255) ** 2, rel=1e-9)
    flat = np.where(hole[..., None], 128, target).astype(np.uint8)
    assert hole_checker_ratio(flat, target, mask) == 0.0  # a flat fill has no grid; the seam is not inside
    stripes = np.repeat(np.where(xx % 2 == 0, 100, 150)[..., None], 3, axis=2).astype(np.uint8)
    assert checker_energy(stripes, hole) == pytest.approx(0.0, abs=1e-20)  # stripes are not a checkerboard
    # a diagonal stroke: the cross-shaped inner pixels still touch known ones diagonally; the 2x2 region does not
    stroke = np.zeros((64, 64), np.float32)
    for d in range(-4, 5):
        stroke += np.eye(64, k=d, dtype=np.float32)
    inner = checker_region(stroke)
    assert inner.any() and (inner <= inner_hole(stroke)).all()
    flat_stroke = np.where(stroke[..., None] > 0, 128, target).astype(np.uint8)
    assert hole_checker_ratio(flat_stroke, target, stroke) == 0.0


def test_hole_checker_ratio_is_undefined_for_a_flat_original():
    target, mask = _texture(0)
    noisy, _ = _texture(30)
    assert hole_checker_ratio(noisy, target, mask) is None
    assert image_metrics(noisy, target, mask)["hole_checker"] is None
    assert image_metrics(noisy, noisy, np.zeros_like(mask))["hole_checker"] is None  # no hole
    assert hole_checker_ratio(noisy, noisy, np.eye(64, dtype=np.float32)) is None  # no inner pixel


# -- the protocol -------------------------------------------------------------------------------
def _split(name: str) -> list[str]:
    with open(PHOTO_LIST, newline="") as fh:
        return [r["name"] for r in csv.DictReader(fh) if r["split"] == name]


def test_v1_keeps_its_eight_test_photos():
    protocol = load_protocol("v1")
    assert len(protocol.images.names) == 8 and set(protocol.images.names) <= set(_split("test"))
    assert protocol.images.split == "test"
    assert not set(_split("test")) & set(_split("train") + _split("val"))


def test_v2_is_the_whole_test_split_with_v1s_mask_rules():
    """photos.csv's test split changed without `python -m fillgap.eval.make_protocol v2`? This fails."""
    v1, v2 = load_protocol("v1"), load_protocol("v2")
    assert v2.images.names == _split("test") and v2.images.split == "test" and v2.sizes == [256, 512]
    rules = ("mask_seed", "buckets", "cells", "min_hit_rate", "max_draws", "preprocess")
    assert all(getattr(v1, r) == getattr(v2, r) for r in rules)
    rebuilt = build_protocol("v2", 2, checksums=False)
    assert rebuilt.model_dump(exclude={"images_sha256", "masks_sha256"}) == v2.model_dump(
        exclude={"images_sha256", "masks_sha256"}
    )
    assert set(v2.images_sha256) == set(v2.masks_sha256) == {"256", "512"}
    assert {g.image for g in v2.grid} <= set(v2.images.names) and len(v2.grid) == 6


def test_make_protocol_refuses_to_rewrite_a_released_protocol(capsys):
    assert make_protocol_main(["v1"]) == 1
    assert "released" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,size", [("v1", 256), ("v1", 512), ("v2", 256), ("v2", 512), ("bundled", 128), ("bundled", 256)]
)
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
@pytest.mark.parametrize("name", sorted(classical_names()))
def test_each_peer_fills_a_flat_picture_with_its_colour(name):
    image = np.empty((24, 32, 3), np.uint8)
    image[:] = (40, 120, 200)
    mask = np.zeros((24, 32), np.float32)
    mask[8:16, 10:20] = 1
    marked = image.copy()
    marked[mask > 0] = (255, 0, 255)  # what was there must not leak into the fill
    out = METHODS[name].fn(marked, mask)
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
    args = [
        "eval",
        "--protocol",
        "bundled",
        "--size",
        "128",
        "--model",
        str(tiny_checkpoint),
        "--methods",
        "mean-fill",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
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
    assert "hole detail ratio" in md and "| hole detail |" in md
    assert "Hole checker ratio" in md and "| hole checker |" in md and "hole checker ratio / seconds" in md
    assert summary["overall"]["mean-fill"]["hole_checker"] == 0.0  # nor a grid
    assert summary["overall"]["mean-fill"]["hole_detail"] == 0.0  # a flat colour has no texture
    grid = Image.open(out / "eval-bundled-128.png")
    assert grid.size == (128 * 4, 22 + 6 * 128)  # input, 2 methods, original; 6 rows under a label strip

    capsys.readouterr()
    assert main(args) == 1  # never overwrite a report unless asked
    err = capsys.readouterr().err
    assert "output exists" in err and len(err.strip().splitlines()) == 1


def test_a_generator_change_is_flagged_in_the_report(tmp_path):
    spec = json.loads(load_protocol("bundled").model_dump_json())
    spec["images"]["names"] = spec["images"]["names"][:1]
    spec.update(
        cells={"box": [2]},
        grid=[{"image": spec["images"]["names"][0], "kind": "box", "bucket": 2}],
        masks_sha256={"128": "0" * 64},
        images_sha256={},
    )
    path = tmp_path / "one.json"
    path.write_text(json.dumps(spec))
    run = run_protocol(load_protocol(path), 128, build_methods(["mean-fill", "opencv-telea"]))
    assert isinstance(run, EvalRun) and len(run.stale) == 1 and "masks differ" in run.stale[0]
    assert not run.result["protocol"]["matches_protocol"]
    assert "Warning" in render_markdown(run.result)
    assert run.grid.shape == (22 + 128, 128 * 4, 3)


def test_every_kth_case_is_a_subset_with_unchanged_checksums():
    protocol = load_protocol("bundled")
    full = run_protocol(protocol, 128, build_methods(["mean-fill"]))
    third = run_protocol(protocol, 128, build_methods(["mean-fill"]), every=3)
    assert [c["image"] + c["kind"] + c["bucket"] for c in third.result["cases"]] == [
        c["image"] + c["kind"] + c["bucket"] for c in full.result["cases"][::3]
    ]
    assert not third.stale and third.result["protocol"]["every"] == 3
    assert "every 3th case" in render_markdown(third.result)
    with pytest.raises(FillgapError):
        run_protocol(protocol, 128, build_methods(["mean-fill"]), every=0)
