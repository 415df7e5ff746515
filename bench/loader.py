"""Streaming loader throughput: pictures per second read from files listed in a manifest, cropped,
augmented and masked (ManifestImages -> InpaintDataset -> DataLoader), for 0, 1, 2 workers.

    nice -n 15 python bench/loader.py

The files: --files JPEGs (default 200) of 1024x768 (about 0.8 MP each), cut from the bundled
photos and written to a temporary folder with a manifest listing them, so every sample is a
real file read and decoded (nothing preloaded). Patch size 128, mixture masks, batch 16, the
shipped config's crop scales. Reports the first batch's latency (worker start-up included) and
the steady rate over the rest of one shuffled pass. Writes bench/results/loader.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from fillgap.data import bundled_photos
from fillgap.data.datasets import InpaintDataset, ManifestImages
from fillgap.imageio import write_image
from fillgap.masks import MaskGenerator

from _common import RESULTS, machine, save_json


def make_files(folder: Path, count: int, width: int = 1024, height: int = 768) -> Path:
    photos = bundled_photos("train")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        s = max(height / h, width / w) * rng.uniform(1.0, 1.3)  # a random view of the photo
        big = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        top, left = rng.integers(0, big.shape[0] - height + 1), rng.integers(0, big.shape[1] - width + 1)
        name = f"{i:05d}.jpg"
        write_image(folder / name, big[top : top + height, left : left + width])
        lines.append(name)
    manifest = folder / "manifest.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def measure(manifest: Path, workers: int, batch_size: int, size: int) -> dict:
    source = ManifestImages(manifest)
    ds = InpaintDataset(source, size, MaskGenerator("mixture", 0), seed=0, scale=(0.12, 1.0))
    loader = DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(0)
    )
    start = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - start
    t0, n = time.perf_counter(), 0
    for batch in it:
        n += batch["image"].shape[0]
    steady = time.perf_counter() - t0
    return {
        "workers": workers,
        "batch_size": batch_size,
        "size": size,
        "samples_timed": n,
        "first_batch_s": round(first, 3),
        "images_per_s": round(n / steady, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    load_start = os.getloadavg()
    torch.set_num_threads(1)  # the main process (workers always use 1)
    with tempfile.TemporaryDirectory(prefix="fillgap-loader-") as tmp:
        manifest = make_files(Path(tmp), args.files)
        mb = sum(p.stat().st_size for p in Path(tmp).glob("*.jpg")) / 1e6
        rows = []
        for w in (int(v) for v in args.workers.split(",")):
            rows.append(measure(manifest, w, args.batch_size, args.size))
            print(rows[-1], flush=True)
    result = {
        "what": "ManifestImages -> InpaintDataset -> DataLoader: files read, decoded, cropped, augmented, masked",
        "files": args.files,
        "file_size": "1024x768 JPEG",
        "files_mb": round(mb, 1),
        "machine": machine(load_average_at_start=load_start),
        "note": "2-core machine shared with other jobs (a training run, test suites): see the load "
        "averages; absolute numbers vary with them, compare rows of one run",
        "rows": rows,
    }
    save_json("loader.json", result)
    print(f"wrote {RESULTS / 'loader.json'}")


if __name__ == "__main__":
    main()
