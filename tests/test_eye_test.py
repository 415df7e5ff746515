"""bench/eye_test.py: blind sheets, the key kept apart, crops and methods per judge, fool rates."""

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import eye_test  # noqa: E402 - bench scripts import their neighbours (_common) by name

METHODS = ["mean-fill", "opencv-telea"]


def textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 60 * np.sin(xx / 9 + seed), 128 + 60 * np.cos(yy / 7), (xx + yy) % 200], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def keys(out: Path) -> dict[int, list[dict]]:
    return {j: json.loads((out / "key" / f"key-judge-{j}.json").read_text())["pairs"] for j in (1, 2)}


def write_answers(out: Path, judge: int, answers: dict[int, str]) -> None:
    (out / f"judge-{judge}" / "answers.txt").write_text("".join(f"{n} {a}\n" for n, a in answers.items()))


def test_make_and_score(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate([(300, 560), (320, 540)]):  # two 256 px crops each: 4 in all
        Image.fromarray(textured(h, w, i)).save(photos / f"secret-name-{i}.png")
    out = tmp_path / "eye"
    args = [
        "make",
        "--methods",
        ",".join(METHODS),
        "--judges",
        "2",
        "--per-method",
        "2",
        "--out",
        str(out),
        "--photos",
        str(photos),
        "--seed",
        "3",
        "--viewing",
        "any",
    ]
    assert eye_test.main(args) == 0
    made = capsys.readouterr().out
    assert "setting 2560: no picture" in made and "shared, methods rotated" in made  # 4 crops, 2 judges x 4 pairs

    # the judges' folders: sheets and an answers template, nothing that names a method, photo or side
    for j in (1, 2):
        folder = out / f"judge-{j}"
        assert sorted(p.name for p in folder.iterdir()) == ["answers.txt", "sheet-01.png"]
        text = (folder / "answers.txt").read_text()
        assert [line for line in text.splitlines() if not line.startswith("#")] == ["1 ?", "2 ?", "3 ?", "4 ?"]
        assert "# Any viewing aid on these sheets is allowed" in text  # the rule, where the judge reads it
        with Image.open(folder / "sheet-01.png") as sheet:
            assert not getattr(sheet, "text", {}) and sheet.width >= 2 * 256
        for word in (*METHODS, "secret", "mean", "telea", "box", "thick"):
            assert word not in text
    assert not list(out.glob("judge-*/*key*")) and (out / "key" / "make.json").exists()

    pairs = keys(out)
    for j, rows in pairs.items():
        assert len({r["case"] for r in rows}) == len(rows) == 4  # every crop once
        assert Counter(r["method"] for r in rows) == {m: 2 for m in METHODS}
        assert {r["filled"] for r in rows} <= {"A", "B"} and all(0.10 <= r["hole_ratio"] <= 0.35 for r in rows)
    # the same crops for both judges (the pool is too small for more), each with the other method
    by_case = {j: {r["case"]: r["method"] for r in rows} for j, rows in pairs.items()}
    assert set(by_case[1]) == set(by_case[2])
    assert all(by_case[1][c] != by_case[2][c] for c in by_case[1])

    # a rerun computes nothing again
    assert eye_test.main(args) == 0
    assert capsys.readouterr().out.count("cached") >= 2 * len(METHODS)

    # refusals: a pair left unanswered, an unknown answer
    write_answers(out, 1, {1: "A", 2: "B", 3: "A"})
    write_answers(out, 2, {n: "A" for n in range(1, 5)})
    with pytest.raises(SystemExit, match="no answer for pair 4"):
        eye_test.main(["score", "--dir", str(out), "--out", str(tmp_path / "res")])
    write_answers(out, 1, {1: "A", 2: "B", 3: "A", 4: "C"})
    with pytest.raises(SystemExit, match="pair 4 needs A or B, got 'C'"):
        eye_test.main(["score", "--dir", str(out), "--out", str(tmp_path / "res")])

    # known answers: judge 1 always says A, judge 2 always spots the fill
    write_answers(out, 1, {n: "A" for n in range(1, 5)})
    write_answers(out, 2, {r["number"]: r["filled"] for r in pairs[2]})
    with pytest.raises(SystemExit, match="has answers"):  # make never overwrites answers
        eye_test.main(args)
    assert eye_test.main(["score", "--dir", str(out), "--out", str(tmp_path / "res")]) == 0
    result = json.loads((tmp_path / "res" / "eye-test.json").read_text())
    for m in METHODS:
        fooled = sum(r["filled"] == "B" for r in pairs[1] if r["method"] == m)  # said A: fooled when B was filled
        assert result["judges"]["1"][m] == {
            "fooled": fooled,
            "n": 2,
            "rate": fooled / 2,
            "ci95": result["judges"]["1"][m]["ci95"],
        }
        assert result["judges"]["2"][m]["fooled"] == 0
        assert result["methods"][m]["all"]["fooled"] == fooled and result["methods"][m]["all"]["n"] == 4
        kinds = {k: c for k, c in result["methods"][m].items() if k != "all"}
        assert set(kinds) == {"256/thick", "256/box"} and sum(c["n"] for c in kinds.values()) == 4
    md = (tmp_path / "res" / "eye-test.md").read_text()
    assert "Fool rate" in md and "untouched" in md and "| mean-fill |" in md and "eye_test.py score" in md
    assert "Viewing: any viewing aid" in md  # from the key: make wrote it
    eye_test.main(["score", "--dir", str(out), "--out", str(tmp_path / "res"), "--viewing", "look"])
    assert "Viewing: by eye only" in (tmp_path / "res" / "eye-test.md").read_text()


def test_versus_shows_two_fills_of_one_crop_and_scores_the_preference(tmp_path, capsys):
    """--versus: every pair is one crop filled by each of the two methods (no untouched side), the
    sides at random; the score is how often the second method's fill was preferred."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate([(300, 560), (320, 540)]):
        Image.fromarray(textured(h, w, i)).save(photos / f"secret-name-{i}.png")
    out = tmp_path / "eye"
    common = ["--judges", "2", "--per-method", "4", "--out", str(out), "--photos", str(photos), "--seed", "5"]
    with pytest.raises(SystemExit, match="exactly two --methods"):
        eye_test.main(["make", "--methods", "mean-fill", "--versus", *common])
    assert eye_test.main(["make", "--methods", ",".join(METHODS), "--versus", *common]) == 0
    capsys.readouterr()
    pairs = keys(out)
    for j, rows in pairs.items():
        assert len({r["case"] for r in rows}) == len(rows) == 4  # every crop once, both fills in its pair
        assert all(sorted(r["sides"].values()) == sorted(METHODS) and "filled" not in r for r in rows)
        text = (out / f"judge-{j}" / "answers.txt").read_text()
        assert "BOTH sides" in text and "untouched photo." not in text.split("\n")[0]
        with Image.open(out / f"judge-{j}" / "sheet-01.png") as sheet:  # neither side is the untouched crop
            sheet.load()
    side_of = {r["number"]: r["sides"] for r in pairs[1]}
    assert {s for sides in side_of.values() for s in sides} == {"A", "B"}
    # judge 1 always calls mean-fill's side the worse one, judge 2 always opencv-telea's
    write_answers(out, 1, {n: next(k for k, m in sides.items() if m == "mean-fill") for n, sides in side_of.items()})
    write_answers(
        out, 2, {r["number"]: next(k for k, m in r["sides"].items() if m == "opencv-telea") for r in pairs[2]}
    )
    assert eye_test.main(["score", "--dir", str(out), "--out", str(tmp_path / "res")]) == 0
    result = json.loads((tmp_path / "res" / "eye-test.json").read_text())
    assert result["judges"]["1"]["fooled"] == 4 and result["judges"]["2"]["fooled"] == 0  # telea preferred by 1
    assert result["second_preferred"]["all"]["n"] == 8 and result["second_preferred"]["all"]["fooled"] == 4
    assert result["second_preferred"]["all"]["p_sign"] == 1.0
    md = (tmp_path / "res" / "eye-test.md").read_text()
    assert "| opencv-telea over mean-fill | 4/8 = 50 %" in md


def test_versus_leaves_out_crops_the_two_methods_fill_the_same(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate([(300, 560), (320, 540)]):
        Image.fromarray(textured(h, w, i)).save(photos / f"p-{i}.png")
    from fillgap.methods import get_method

    real = eye_test.fill_case
    same_ids = set()

    def fill_case(folder, case, method, name, tag=""):  # telea's fill replaced by mean-fill's on half the crops
        if name == "opencv-telea" and case["pool_index"] % 2 == 0:
            same_ids.add(case["id"])
            return real(folder, case, get_method("mean-fill"), "mean-fill", tag)
        return real(folder, case, method, name, tag)

    monkeypatch.setattr(eye_test, "fill_case", fill_case)
    out = tmp_path / "eye"
    args = ["make", "--versus", "--methods", ",".join(METHODS), "--judges", "1", "--per-method", "4"]
    assert eye_test.main([*args, "--out", str(out), "--photos", str(photos)]) == 0
    assert f"versus: {len(same_ids)} of 4 crops left out" in capsys.readouterr().out and same_ids
    shown = {r["case"] for r in json.loads((out / "key" / "key-judge-1.json").read_text())["pairs"]}
    assert len(shown) == 4 - len(same_ids) and not shown & same_ids


def test_alone_shows_one_crop_per_picture_untouched_or_filled(tmp_path, capsys):
    """--alone: every picture is one crop, the untouched crop being one more arm of the rotation; the
    judge writes R or F; the score is each arm's share taken for untouched, with Fisher's test."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate([(300, 560), (320, 540)]):
        Image.fromarray(textured(h, w, i)).save(photos / f"p-{i}.png")
    out = tmp_path / "eye"
    common = ["--methods", ",".join(METHODS), "--judges", "1", "--per-method", "1", "--out", str(out)]
    with pytest.raises(SystemExit, match="not both"):
        eye_test.main(["make", "--alone", "--versus", *common, "--photos", str(photos)])
    assert eye_test.main(["make", "--alone", *common, "--photos", str(photos), "--seed", "2"]) == 0
    capsys.readouterr()
    rows = json.loads((out / "key" / "key-judge-1.json").read_text())["pairs"]
    assert sorted(r["method"] for r in rows) == sorted(["untouched", *METHODS]) and len({r["case"] for r in rows}) == 3
    text = (out / "judge-1" / "answers.txt").read_text()
    assert "R (untouched, real) or F" in text
    with Image.open(out / "judge-1" / "sheet-01.png") as sheet:  # one crop wide, not a pair
        assert 256 <= sheet.width < 2 * 256
    number = {r["method"]: r["number"] for r in rows}
    write_answers(out, 1, {number["untouched"]: "R", number["mean-fill"]: "F", number["opencv-telea"]: "A"})
    with pytest.raises(SystemExit, match="needs R or F, got 'A'"):
        eye_test.main(["score", "--dir", str(out), "--out", str(tmp_path / "res")])
    write_answers(out, 1, {number["untouched"]: "R", number["mean-fill"]: "F", number["opencv-telea"]: "r"})
    assert eye_test.main(["score", "--dir", str(out), "--out", str(tmp_path / "res")]) == 0
    arms = json.loads((tmp_path / "res" / "eye-test.json").read_text())["arms"]
    assert arms["untouched"]["all"]["fooled"] == 1 and arms["mean-fill"]["all"]["fooled"] == 0
    assert arms["opencv-telea"]["all"]["fooled"] == 1 and arms["opencv-telea"]["all"]["p_fisher"] == 1.0
    assert "| opencv-telea | 1/1 = 100 %" in (tmp_path / "res" / "eye-test.md").read_text()


def test_sign_test():
    assert eye_test.sign_test(5, 10) == 1.0
    assert eye_test.sign_test(10, 10) == pytest.approx(2 / 1024)
    assert eye_test.sign_test(0, 10) == pytest.approx(2 / 1024)
    assert eye_test.sign_test(8, 10) == pytest.approx(2 * (45 + 10 + 1) / 1024)


def test_the_2560_setting_fills_the_whole_picture_and_shows_a_crop_around_the_hole(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(textured(1000, 1650, 5)).save(photos / "big.png")  # from 1600 px: native size
    Image.fromarray(textured(900, 1500, 6)).save(photos / "small.png")  # under 1600 px: skipped
    out = tmp_path / "eye"
    assert (
        eye_test.main(
            [
                "make",
                "--methods",
                ",".join(METHODS),
                "--judges",
                "1",
                "--per-method",
                "1",
                "--out",
                str(out),
                "--photos",
                str(photos),
                "--settings",
                "2560",
            ]
        )
        == 0
    )
    rows = json.loads((out / "key" / "key-judge-1.json").read_text())["pairs"]
    assert len(rows) == 2 and {r["photo"] for r in rows} == {"big.png"} and {r["method"] for r in rows} == set(METHODS)
    for r in rows:
        assert r["picture_size"] == [1650, 1000] and r["crop_box"]["size"] == 384 and r["kind"] == "blob"
        hole = np.asarray(Image.open(out / "cache" / r["case"] / "hole.png")) > 0
        ys, xs = np.nonzero(hole)
        assert abs(ys.mean() - 192) < 40 and abs(xs.mean() - 192) < 40  # the crop is centred on the hole
        assert 220 * 0.9 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 384  # the blob's extent, cut at the crop
        truth = np.asarray(Image.open(out / "cache" / r["case"] / "truth.png"))
        fill = np.asarray(Image.open(next((out / "cache" / r["case"]).glob("fill-*.png"))))
        assert truth.shape == fill.shape == (384, 384, 3)
        assert np.array_equal(truth[~hole], fill[~hole]) and not np.array_equal(truth[hole], fill[hole])


def test_judges_get_distinct_crops_when_the_pool_allows():
    pool = {
        "256": [
            {"setting": "256", "photo": f"p{i}", "file": "", "size": [256, 256], "box": [0, 0, 256, 256]}
            for i in range(12)
        ]
    }
    plan = eye_test.slots(3, 2, [("256", "thick"), ("256", "box")])
    assert plan == [("256", "thick")] * 3 + [("256", "box")] * 3
    crops, regime = eye_test.assign(pool, plan, 2, 3, seed=0)
    assert regime == {"256": "distinct"}
    photos = [[c["photo"] for c in judge] for judge in crops]
    assert not set(photos[0]) & set(photos[1]) and all(len(set(p)) == 6 for p in photos)
    assert [c["method_index"] for c in crops[1]] == [1, 2, 0, 1, 2, 0]  # crop k of judge j: method (k + j) mod M


def test_wilson_interval():
    assert eye_test.wilson(0, 4)[0] == 0 and eye_test.wilson(0, 4)[1] == pytest.approx(1.96**2 / (4 + 1.96**2))
    lo, hi = eye_test.wilson(5, 10)
    assert lo == pytest.approx(1 - hi) and lo == pytest.approx(0.2366, abs=1e-4)


def test_texture_variant():
    """--texture-variant: the default method under another name, with the given texture settings;
    a bad name or value stops the run with one line before any fill."""
    variants = eye_test.texture_variants(
        [["big", "coarse_min_side=32,reuse_cost=0.1,grain.noise_cap=2"]], ["big", "mean-fill"]
    )
    method = eye_test.variant_method("big", *variants["big"])
    assert method.name == "big" and method.network.name == "fillgap-network"
    assert (method.settings.coarse_min_side, method.settings.reuse_cost, method.grain.noise_cap) == (32, 0.1, 2.0)
    assert eye_test.texture_variants([["x", "grain.jpeg=false"]], ["x"])["x"][1].jpeg is False
    assert eye_test.texture_variants([["x", "grain.jpeg=0"]], ["x"])["x"][1].jpeg is False
    for bad in (
        "nope=1",
        "patch=five",
        "patch=",
        "guide_weight=nan",
        "grain.nope=1",
        "grain.noise_cap=x",
        "grain.jpeg=maybe",
    ):
        with pytest.raises(SystemExit, match=f"'{bad}' is not KEY=VALUE"):
            eye_test.texture_variants([["x", bad]], ["x"])
    for bad in ("vote_quantile=2", "patch=0"):
        with pytest.raises(SystemExit, match="these settings do not run"):
            eye_test.texture_variants([["x", bad]], ["x"])
    with pytest.raises(SystemExit, match="that name is taken"):
        eye_test.texture_variants([["fillgap-texture", "patch=7"]], ["fillgap-texture"])
    with pytest.raises(SystemExit, match="not in --methods"):
        eye_test.texture_variants([["x", "patch=7"]], ["mean-fill"])
