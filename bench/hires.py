"""High-resolution fills: strategy x hole detail ratio x hole PSNR x seconds x peak MB.

    python bench/hires.py                 # writes bench/results/hires.{json,md}, docs/hires-crop.png and docs/hires-scratches.png

Pictures: the `test` split's large originals (photos.csv; never the train split), scaled so the
short side is 1600 px and centre-cropped to 2560 x 1600; and a 12 MP picture (4000 x 3000 centre
crop of the `val` photo Dragonfly_by_Bolly). The originals come from the Debian packages named in
photos.csv (`apt-get download lomiri-wallpapers-16.04 mate-backgrounds`, `dpkg-deb -x`); give
their folder with --originals (default: the first of $FILLGAP_ORIGINALS, /tmp/dscan/x that has them).

Holes (seeded): a 5 % blob (overlapping ellipses around one centre), 12 % thick strokes
(fillgap.masks' `thick` kind at full resolution, drawn until 10-14 %) and scratches (three 4 px
polylines across the picture: a thin hole in a window larger than the network's 1024 px, which
`auto` fills in native-resolution tiles, not by cra).

Rows: each (method, strategy) runs in its own process over every case (so peak RSS is its own):
hole detail ratio (fillgap.eval.metrics.hole_detail_ratio), hole PSNR, seconds per fill (in process,
after a warm-up fill) and the process's peak RSS. Then the folder comparison: `fillgap fill DIR
--mask-dir ...` against a plain script that decodes, fills with OpenCV Telea and encodes the
same files (both as fresh processes, wall time), and the 12 MP in-process fill (time, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from _common import RESULTS, machine, proc_memory_mb, save_json, save_text

ROOT = Path(__file__).resolve().parent.parent
TEST_PHOTOS = {  # test split of photos.csv, large enough for 2560 x 1600 without upscaling
    "LadyBird": "mate-backgrounds/usr/share/backgrounds/mate/nature/LadyBird.jpg",
    "Picture_0B_by_freespace": "lomiri-wallpapers-16.04/usr/share/backgrounds/Picture_0B_by_freespace.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi": "lomiri-wallpapers-16.04/usr/share/backgrounds/"
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
}
BIG_PHOTO = ("Dragonfly_by_Bolly", "lomiri-wallpapers-16.04/usr/share/backgrounds/Dragonfly_by_Bolly.jpg")
W, H = 2560, 1600
# crop is not a row of its own: every window here is larger than the network's 1024 px, so crop
# fills it as resize does; auto picks cra for the blob and strokes, tiles for the scratches (the
# "auto picks" line checks).
ROWS = [
    ("opencv-telea", "crop"),
    ("fillgap-network", "resize"),
    ("fillgap-network", "cra"),
    ("fillgap-network", "auto"),
    ("fillgap-texture", "auto"),
]
KINDS = ("blob5", "strokes12", "scratches4")


def originals_dir(given: str | None) -> Path:
    candidates = [given] if given else [os.environ.get("FILLGAP_ORIGINALS"), "/tmp/dscan/x"]
    for c in candidates:
        if c and (Path(c) / next(iter(TEST_PHOTOS.values()))).exists():
            return Path(c)
    sys.exit(
        "bench/hires.py: the large originals are not found: download and extract the Debian packages "
        "lomiri-wallpapers-16.04 and mate-backgrounds and pass their folder with --originals"
    )


def fit(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    """Scale (area) so the picture covers w x h, centre crop."""
    s = max(w / rgb.shape[1], h / rgb.shape[0])
    if s < 1:
        rgb = cv2.resize(rgb, (math.ceil(rgb.shape[1] * s), math.ceil(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
    top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    return np.ascontiguousarray(rgb[top : top + h, left : left + w])


def blob_mask(rng: np.random.Generator, h: int, w: int, ratio: float) -> np.ndarray:
    """One object-sized blob: ellipses around a centre until ``ratio`` of the picture is covered."""
    mask = np.zeros((h, w), np.uint8)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    r = math.sqrt(ratio * h * w / math.pi)
    while (mask > 0).mean() < ratio:
        oy, ox = rng.normal(0, 0.35 * r, 2)
        axes = (int(rng.uniform(0.3, 0.6) * r), int(rng.uniform(0.3, 0.6) * r))
        cv2.ellipse(mask, (int(cx + ox), int(cy + oy)), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    return mask


def stroke_mask(seed: int, h: int, w: int, lo: float = 0.10, hi: float = 0.14) -> np.ndarray:
    from fillgap.masks import make_rng, stroke_mask as strokes

    for i in range(10_000):
        m = strokes(make_rng(seed, 0, i), h, w, "thick")
        if lo <= m.mean() < hi:
            return (m * 255).astype(np.uint8)
    raise RuntimeError("no stroke mask in range")


def scratch_mask(rng: np.random.Generator, h: int, w: int, width: int = 4, count: int = 3) -> np.ndarray:
    """``count`` polylines of 4 random points across the picture, ``width`` px wide."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(count):
        points = np.stack([rng.uniform(0, w, 4), rng.uniform(0, h, 4)], axis=1).astype(np.int32)
        cv2.polylines(mask, [points], False, 255, width)
    return mask


def make_cases(originals: Path, folder: Path) -> list[dict]:
    cases = []
    for i, (name, rel) in enumerate(TEST_PHOTOS.items()):
        rgb = fit(np.asarray(Image.open(originals / rel).convert("RGB")), W, H)
        Image.fromarray(rgb).save(folder / f"{name}.png")
        for kind, mask in (
            ("blob5", blob_mask(np.random.default_rng(100 + i), H, W, 0.05)),
            ("strokes12", stroke_mask(200 + i, H, W)),
            ("scratches4", scratch_mask(np.random.default_rng(300 + i), H, W)),
        ):
            Image.fromarray(mask).save(folder / f"{name}-{kind}.png")
            cases.append(
                {
                    "photo": name,
                    "kind": kind,
                    "image": str(folder / f"{name}.png"),
                    "mask": str(folder / f"{name}-{kind}.png"),
                    "hole": float((mask > 0).mean()),
                }
            )
    return cases


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_row(method: str, strategy: str, cases_json: str, crops: str) -> None:
    """One (method, strategy) over every case in this process; prints a JSON line."""
    import torch
    from fillgap import inpaint
    from fillgap.fill import plan
    from fillgap.methods import get_method
    from fillgap.eval.metrics import hole_detail_ratio, psnr_from_mse

    torch.set_num_threads(2)
    cases = json.loads(Path(cases_json).read_text())
    m = get_method(method)
    warm = np.asarray(Image.open(cases[0]["image"]).convert("RGB"))[:256, :256]
    wm = np.zeros(warm.shape[:2], np.uint8)
    wm[100:150, 100:150] = 255
    inpaint(warm, wm, m, strategy=strategy)
    rows = []
    for case in cases:
        img = np.asarray(Image.open(case["image"]).convert("RGB"))
        mask = np.asarray(Image.open(case["mask"]).convert("L"))
        t, c = time.perf_counter(), time.process_time()
        out = inpaint(img, mask, m, strategy=strategy)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        auto = sorted({"tiles" if job.write else job.strategy for job in plan(img, mask > 0, m, "auto")})
        hole = mask > 0
        err = (out[hole].astype(np.float64) - img[hole]) / 255.0
        rows.append(
            {
                "photo": case["photo"],
                "kind": case["kind"],
                "seconds": seconds,
                "cpu_seconds": cpu,
                "auto_picks": "+".join(auto),
                "detail": hole_detail_ratio(out, img, mask),
                "hole_psnr": psnr_from_mse(float((err**2).mean())),
            }
        )
        if crops and case["kind"] in CROP_KINDS and case is crop_case(cases, case["kind"]):
            Image.fromarray(out).save(Path(crops) / f"{method}-{strategy}-{case['kind']}.png")
    print(json.dumps({"method": method, "strategy": strategy, "cases": rows, "peak_mb": peak_mb()}))


def child_big(image: str, mask: str, runtime: str = "auto", method: str = "fillgap-network") -> None:
    """The 12 MP in-process fill: the first fill (model loaded before) and a second one."""
    import torch
    from fillgap import inpaint
    from fillgap.methods import get_method

    torch.set_num_threads(2)
    m = get_method(method, runtime)
    img = np.asarray(Image.open(image).convert("RGB"))
    msk = np.asarray(Image.open(mask).convert("L"))
    loaded = proc_memory_mb(os.getpid())[
        "VmRSS"
    ]  # torch, the model, the picture and its mask: the floor under the fills
    times, cpu = [], []
    for _ in range(2):
        t, c = time.perf_counter(), time.process_time()
        inpaint(img, msk, m)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(
        json.dumps(
            {
                "first_s": times[0],
                "second_s": times[1],
                "first_cpu_s": cpu[0],
                "second_cpu_s": cpu[1],
                "peak_mb": peak_mb(),
                "loaded_mb": loaded,
                "megapixels": img.shape[0] * img.shape[1] / 1e6,
                "hole": float((msk > 0).mean()),
            }
        )
    )


PLAIN = r"""
import sys, cv2, numpy as np
from pathlib import Path
from PIL import Image
src, masks, out = map(Path, sys.argv[1:4])
out.mkdir(exist_ok=True)
for p in sorted(src.iterdir()):
    rgb = np.asarray(Image.open(p).convert("RGB"))
    m = (np.asarray(Image.open(masks / (p.stem + ".png")).convert("L")) > 0).astype(np.uint8) * 255
    Image.fromarray(cv2.inpaint(rgb, m, 5, cv2.INPAINT_TELEA)).save(out / (p.stem + ".png"))
"""


def run_child(args: list[str], cache: Path | None = None) -> dict:
    """A child process's JSON line; with ``cache``, kept there so an interrupted run resumes."""
    key = cache / ("-".join(a for a in args[:3] if not a.startswith("/")) + ".json") if cache else None
    if key is not None and key.exists():
        return json.loads(key.read_text())
    result = _run_child(args)
    if key is not None:
        key.write_text(json.dumps(result))
    return result


def _run_child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if res.returncode:
        sys.exit(f"child {args[:3]} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def folder_timing(cases: list[dict], tmp: Path) -> dict:
    """`fillgap fill` on a folder vs the plain decode + Telea + encode script, same JPEG inputs."""
    src, masks = tmp / "folder-in", tmp / "folder-masks"
    src.mkdir(), masks.mkdir()
    for i, case in enumerate(cases):
        stem = f"{i:02d}-{case['photo']}-{case['kind']}"
        Image.open(case["image"]).save(src / f"{stem}.jpg", quality=92)
        Image.open(case["mask"]).save(masks / f"{stem}.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = {}
    for label, cmd in (
        ("plain_telea_script", [sys.executable, "-c", PLAIN, str(src), str(masks), str(tmp / "o1")]),
        (
            "fillgap_fill",
            [sys.executable, "-m", "fillgap", "fill", str(src), "--mask-dir", str(masks), "-o", str(tmp / "o2")],
        ),
    ):
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        out[label] = time.perf_counter() - t
        if res.returncode:
            sys.exit(f"{label} failed: {res.stderr[-2000:]}")
    out["ratio"] = out["fillgap_fill"] / out["plain_telea_script"]
    out["files"] = len(cases)
    return out


CROP_KINDS = {  # kind -> the panels of its 100 % crop picture: (label, row's fill or None = the picture)
    "blob5": [("original", None), ("resize", "fillgap-network-resize"), ("cra", "fillgap-network-cra")],
    "scratches4": [
        ("scratches (red)", None),
        ("auto: tiles", "fillgap-network-auto"),
        ("cra", "fillgap-network-cra"),
        ("telea", "opencv-telea-crop"),
    ],
}


def crop_case(cases: list[dict], kind: str) -> dict:
    """The case a kind's crop picture shows: the first blob (LadyBird, as before), the last
    scratches (the mountain photo: rock texture, where pasted texture shows)."""
    of_kind = [c for c in cases if c["kind"] == kind]
    return of_kind[-1] if kind == "scratches4" else of_kind[0]


def crop_picture(case: dict, crops: Path, dest: Path) -> None:
    """100 % crop around ``case``'s hole: the panels of ``CROP_KINDS`` for its kind, labelled (the
    scratches' first panel marks the hole in red)."""
    img = np.asarray(Image.open(case["image"]).convert("RGB"))
    mask = np.asarray(Image.open(case["mask"]).convert("L")) > 0
    ys, xs = np.nonzero(mask)
    # a blob: its centre; lines: one of their pixels (their centre may be far from any)
    cy, cx = (
        (int(ys.mean()), int(xs.mean())) if case["kind"] == "blob5" else (int(ys[len(ys) // 3]), int(xs[len(xs) // 3]))
    )
    ch, cw = 360, 480
    top, left = max(0, min(H - ch, cy - ch // 2)), max(0, min(W - cw, cx - cw // 2))
    cells = []
    for label, stem in CROP_KINDS[case["kind"]]:
        if stem is None:
            pic = img.copy()
            if case["kind"] != "blob5":
                pic[mask] = (255, 0, 0)
        else:
            pic = np.asarray(Image.open(crops / f"{stem}-{case['kind']}.png").convert("RGB"))
        cell = np.ascontiguousarray(pic[top : top + ch, left : left + cw])
        cv2.putText(cell, label, (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 6, cv2.LINE_AA)  # outline: snow
        cv2.putText(cell, label, (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
        cells.append(cell)
    gap = np.full((ch, 6, 3), 255, np.uint8)
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.hstack([x for cell in cells for x in (cell, gap)][:-1])).save(dest, optimize=True)


def fmt(v: float | None, d: int = 2) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--originals", help="Folder holding the extracted Debian packages' files.")
    ap.add_argument("--out", type=Path, default=RESULTS / "hires")
    ap.add_argument("--picture", type=Path, default=ROOT / "docs" / "hires-crop.png")
    ap.add_argument("--cache", type=Path, help="Keep each row's result here (a rerun skips finished rows).")
    args = ap.parse_args()
    originals = originals_dir(args.originals)
    load_before = open("/proc/loadavg").read().strip()
    with tempfile.TemporaryDirectory(prefix="fillgap-hires-") as tmp:
        tmp = Path(tmp)
        cases = make_cases(originals, tmp)
        (tmp / "cases.json").write_text(json.dumps(cases))
        crops = tmp / "crops"
        crops.mkdir()
        if args.cache:
            args.cache.mkdir(parents=True, exist_ok=True)
            crops = args.cache
        rows = [run_child(["--child", m, s, str(tmp / "cases.json"), str(crops)], args.cache) for m, s in ROWS]
        crop_picture(crop_case(cases, "blob5"), crops, args.picture)
        crop_picture(crop_case(cases, "scratches4"), crops, args.picture.with_name("hires-scratches.png"))
        # the folder comparison on the blob and strokes cases, as before the scratches were added
        folder = folder_timing([c for c in cases if c["kind"] != "scratches4"], tmp)
        big = fit(np.asarray(Image.open(originals / BIG_PHOTO[1]).convert("RGB")), 4000, 3000)
        Image.fromarray(big).save(tmp / "big.png")
        Image.fromarray(blob_mask(np.random.default_rng(7), 3000, 4000, 0.05)).save(tmp / "big-mask.png")
        big_row = run_child(["--big", str(tmp / "big.png"), str(tmp / "big-mask.png")], args.cache)
        # the same in fp32: bf16 autocast holds casts of the activations (more memory)
        big_fp32 = run_child(["--big", str(tmp / "big.png"), str(tmp / "big-mask.png"), "torch"], None)
        big_texture = run_child(
            ["--big", str(tmp / "big.png"), str(tmp / "big-mask.png"), "auto", "fillgap-texture"], None
        )
    load_after = open("/proc/loadavg").read().strip()

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    lines = [
        "| method | strategy | hole | detail ratio | hole PSNR (dB) | s / fill | CPU s / fill | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for kind in KINDS:
            cs = [c for c in r["cases"] if c["kind"] == kind]
            lines.append(
                f"| {r['method']} | {r['strategy']} | {kind} | {fmt(mean([c['detail'] for c in cs]))} | "
                f"{fmt(mean([c['hole_psnr'] for c in cs]))} | {fmt(mean([c['seconds'] for c in cs]))} | "
                f"{fmt(mean([c['cpu_seconds'] for c in cs]))} | "
                f"{r['peak_mb']:.0f} |"
            )
    picks = sorted({c["auto_picks"] for r in rows for c in r["cases"] if r["method"] == "fillgap-network"})
    lines.append("")
    lines.append(f"Strategy auto (the default) picks: {', '.join(picks)} (per window, over every case above).")
    md = [
        "# High-resolution fills (bench/hires.py)",
        "",
        f"{len(TEST_PHOTOS)} test-split photos at {W}x{H}, a 5 % blob, 12 % thick strokes and three 4 px "
        f"scratches each (hole {mean([c['hole'] for c in cases if c['kind'] == 'scratches4']) * 100:.1f} %); "
        f"2 torch threads; load average before {load_before}, after {load_after}.",
        "",
        *lines,
        "",
        f"Folder of {folder['files']} JPEGs: `fillgap fill` {folder['fillgap_fill']:.1f} s, plain decode + Telea + "
        f"encode script {folder['plain_telea_script']:.1f} s: ratio {folder['ratio']:.2f}.",
        "",
        f"{big_row['megapixels']:.0f} MP picture, {big_row['hole'] * 100:.1f} % blob, fillgap-network, strategy auto, "
        f"in process: first fill {big_row['first_s']:.2f} s ({big_row['first_cpu_s']:.2f} CPU s), second "
        f"{big_row['second_s']:.2f} s ({big_row['second_cpu_s']:.2f} CPU s), "
        f"peak RSS {big_row['peak_mb']:.0f} MB; with `--runtime torch` (fp32): first {big_fp32['first_s']:.2f} s, "
        f"second {big_fp32['second_s']:.2f} s, peak RSS {big_fp32['peak_mb']:.0f} MB. Resident before the first "
        f"fill (torch, the model, the picture and mask): {big_row['loaded_mb']:.0f} MB. With the texture stage "
        f"(`fillgap-texture`): first {big_texture['first_s']:.2f} s, second {big_texture['second_s']:.2f} s, "
        f"peak RSS {big_texture['peak_mb']:.0f} MB.",
    ]
    text = "\n".join(md) + "\n"
    print(text)
    save_text(args.out.with_suffix(".md").resolve(), text)
    save_json(
        args.out.with_suffix(".json").resolve(),
        {
            "rows": rows,
            "folder": folder,
            "big": big_row,
            "big_fp32": big_fp32,
            "big_texture": big_texture,
            "load_before": load_before,
            "load_after": load_after,
            "cases": [{k: c[k] for k in ("photo", "kind", "hole")} for c in cases],
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_row(*sys.argv[2:6])
    elif sys.argv[1:2] == ["--big"]:
        child_big(*sys.argv[2:6])
    else:
        main()
