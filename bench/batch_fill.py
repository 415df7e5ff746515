"""Folder filling throughput (pictures/s) vs reader/writer threads and batch size.

    nice -n 15 python bench/batch_fill.py

A folder of --count PNG pictures (default 24, 256x256, cut from the bundled photos) with two
mask sets: "fixed" (the same 40x60 box in every picture, e.g. a date stamp: every window has
the same size, so batches fill up) and "random" (mixture strokes, different in every picture:
windows rarely share a size). Each setting fills the whole folder into a fresh output folder
with fillgap.engines.local.fill_folder (model loaded once, outside the timing); the baseline is the
previous loop, fillgap.files.fill_file on one picture after the other. Settings run in
interleaved rounds (--repeats); the median wall time (pictures/s) and CPU time (ms of this
process's CPU per picture, all threads) are reported with every round's. The model is the shipped
default when present, else an untrained ffc-small (same cost per call). Writes
bench/results/batch_fill.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fillgap.engines.plan import plan_folder
from fillgap.files import fill_file
from fillgap.engines.local import fill_folder
from fillgap.checkpoint import DEFAULT_WEIGHTS, load_model
from fillgap.data import bundled_photos
from fillgap.data.datasets import random_patch
from fillgap.imageio import write_image
from fillgap.masks import MaskGenerator
from fillgap.models import create_model

from _common import RESULTS, machine, save_json


def make_folder(root: Path, count: int, size: int) -> None:
    photos = bundled_photos("train")
    strokes = MaskGenerator("mixture", 0)
    rng = np.random.default_rng(0)
    for sub in ("images", "fixed", "random"):
        (root / sub).mkdir()
    box = np.zeros((size, size), np.uint8)
    box[size - 56 : size - 16, size - 76 : size - 16] = 255
    for i in range(count):
        name = f"{i:05d}.png"
        write_image(root / "images" / name, random_patch(rng, photos[i % len(photos)], size, (0.3, 1.0)))
        for sub, m in (("fixed", box), ("random", (strokes(size, size, 0, i) * 255).astype(np.uint8))):
            write_image(root / sub / name, np.repeat(m[..., None], 3, axis=2))


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads): CPU time is what a loaded machine
    distorts least, so it shows what batching saves even when the wall clock is noisy."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all settings (interleaved); median reported")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    load_start = os.getloadavg()
    if args.threads:
        torch.set_num_threads(args.threads)
    if DEFAULT_WEIGHTS.exists():
        model, model_name = load_model(None), "fillgap-network"
    else:
        torch.manual_seed(0)
        model, model_name = create_model("ffc-small").eval(), "ffc-small (untrained)"
    workers = [int(v) for v in args.workers.split(",")]
    batches = [int(v) for v in args.batch_sizes.split(",")]
    settings = [(masks, None, None) for masks in ("fixed", "random")]  # None: the fill_file loop
    settings += [("fixed", w, b) for w in workers for b in batches]
    settings += [("random", max(workers), b) for b in batches]
    times: dict[tuple, list[tuple[float, float]]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="fillgap-batchfill-") as tmp:
        root = Path(tmp)
        make_folder(root, args.count, args.size)
        out = root / "out"
        for _ in range(args.repeats):  # interleaved, so a burst of load elsewhere hits every setting alike
            for masks, w, b in settings:
                if w is None:

                    def job():
                        for img, msk, dst in plan_folder(root / "images", root / masks, out):
                            fill_file(img, msk, dst, model)
                else:

                    def job():
                        report = fill_folder(root / "images", root / masks, out, model, workers=w, batch_size=b)
                        assert len(report.written) == args.count and not report.failed, report.failed[:3]

                times[(masks, w, b)].append(timed(job))
                shutil.rmtree(out)
                print(masks, w, b, [round(t, 2) for t in times[(masks, w, b)][-1]], flush=True)
    rows = []
    for (masks, w, b), ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        rows.append(
            {
                "masks": masks,
                "how": "fill_file loop (before)" if w is None else "fill_folder",
                "workers": w,
                "batch_size": b,
                "wall_s": [round(t[0], 2) for t in ts],
                "cpu_s": [round(t[1], 2) for t in ts],
                "images_per_s_median": round(args.count / wall, 2),
                "cpu_ms_per_image_median": round(1000 * cpu / args.count, 1),
            }
        )
    result = {
        "what": f"fill a folder of {args.count} pictures {args.size}x{args.size} (PNG in, PNG out), pictures/s",
        "model": model_name,
        "torch_threads": torch.get_num_threads(),
        "machine": machine(load_average_at_start=load_start),
        "note": "2-core machine shared with other jobs (a training run, test suites): see the load "
        "averages; absolute numbers vary with them, compare rows of one run",
        "rows": rows,
    }
    save_json("batch_fill.json", result)
    print(f"wrote {RESULTS / 'batch_fill.json'}")


if __name__ == "__main__":
    main()
