"""Folder filling throughput (pictures/s) vs reader/writer threads and batch size.

    nice -n 15 python bench/batch_fill.py

A folder of --count PNG pictures (default 96, 256x256, cut from the bundled photos) with two
mask sets: "fixed" (the same 40x60 box in every picture, e.g. a date stamp: every window has
the same size, so batches fill up) and "random" (mixture strokes, different in every picture:
windows rarely share a size). Each setting fills the whole folder into a fresh output folder
with fillgap.batch.fill_folder (model loaded once, outside the timing); the baseline is the
previous loop, fillgap.api.fill_file on one picture after the other. The model is the shipped
default when present, else an untrained ffc-small (same cost per call). Writes
bench/results/batch_fill.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fillgap.api import fill_file, plan_folder
from fillgap.batch import fill_folder
from fillgap.checkpoint import DEFAULT_WEIGHTS, load_model
from fillgap.data import bundled_photos
from fillgap.data.datasets import random_patch
from fillgap.imageio import write_image
from fillgap.masks import MaskGenerator
from fillgap.models import create_model

RESULTS = Path(__file__).with_name("results")


def make_folder(root: Path, count: int, size: int) -> None:
    photos = bundled_photos("train")
    strokes = MaskGenerator("mixture", 0)
    rng = np.random.default_rng(0)
    for sub in ("images", "fixed", "random"):
        (root / sub).mkdir()
    box = np.zeros((size, size), np.uint8)
    box[size - 56:size - 16, size - 76:size - 16] = 255
    for i in range(count):
        name = f"{i:05d}.png"
        write_image(root / "images" / name, random_patch(rng, photos[i % len(photos)], size, (0.3, 1.0)))
        for sub, m in (("fixed", box), ("random", (strokes(size, size, 0, i) * 255).astype(np.uint8))):
            write_image(root / sub / name, np.repeat(m[..., None], 3, axis=2))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--batch-sizes", default="1,4,8")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if DEFAULT_WEIGHTS.exists():
        model, model_name = load_model(None), "shipped default"
    else:
        torch.manual_seed(0)
        model, model_name = create_model("ffc-small").eval(), "ffc-small (untrained)"
    workers = [int(v) for v in args.workers.split(",")]
    batches = [int(v) for v in args.batch_sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fillgap-batchfill-") as tmp:
        root = Path(tmp)
        make_folder(root, args.count, args.size)

        def record(masks: str, how: str, w, b, seconds: float) -> None:
            rows.append({"masks": masks, "how": how, "workers": w, "batch_size": b, "seconds": round(seconds, 2),
                         "images_per_s": round(args.count / seconds, 2)})
            print(rows[-1], flush=True)

        for masks in ("fixed", "random"):
            out = root / "out"

            def loop():
                for img, msk, dst in plan_folder(root / "images", root / masks, out):
                    fill_file(img, msk, dst, model)
            record(masks, "fill_file loop (before)", None, None, timed(loop))
            shutil.rmtree(out)
            settings = [(w, b) for w in workers for b in batches] if masks == "fixed" else \
                [(max(workers), 1), (max(workers), max(batches))]
            for w, b in settings:
                report = None

                def run():
                    nonlocal report
                    report = fill_folder(root / "images", root / masks, out, model, workers=w, batch_size=b)
                record(masks, "fill_folder", w, b, timed(run))
                assert len(report.written) == args.count and not report.failed, report.failed[:3]
                shutil.rmtree(out)
    result = {
        "what": f"fill a folder of {args.count} pictures {args.size}x{args.size} (PNG in, PNG out), pictures/s",
        "model": model_name, "torch_threads": torch.get_num_threads(),
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "note": "measured while a training run and other jobs used the same 2 cores: absolute numbers are "
                "depressed and noisy; compare rows with each other",
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_fill.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'batch_fill.json'}")


if __name__ == "__main__":
    main()
