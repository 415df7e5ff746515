"""Training-loader throughput: samples per second of InpaintDataset over the prepared train photos.

    nice -n 15 python bench/data.py --root /tmp/fg-data

For each patch size (256, 512) and DataLoader worker count (0, 2), and once more with 0 workers and
one torch thread in the main process: mixture masks, the shipped
config's crop scales (0.12-1.0) and batch size (12), a shuffled epoch. Reports the time to the
first batch (worker start-up included) and the steady rate over the following batches.
Writes bench/results/data.json and bench/results/data.md. Needs `fillgap data prepare --sets photos`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.data import DataLoader

from fillgap.data.datasets import InpaintDataset
from fillgap.data.photos import photo_source
from fillgap.masks import MaskGenerator

from _common import machine, save_json, save_text


def measure(source, size: int, workers: int, batches: int, batch_size: int, scale, threads: int) -> dict:
    torch.set_num_threads(threads)  # the main process's intra-op threads (workers always use 1)
    ds = InpaintDataset(
        source, size, MaskGenerator("mixture", 0), seed=0, samples_per_epoch=(batches + 1) * batch_size, scale=scale
    )
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
        "size": size,
        "workers": workers,
        "torch_threads": threads,
        "batch_size": batch_size,
        "samples": n,
        "first_batch_s": round(first, 3),
        "samples_per_s": round(n / steady, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--root", default=None, help="data root holding photos/ (default: $FILLGAP_DATA or ~/.cache/fillgap)"
    )
    ap.add_argument("--batches", type=int, default=20, help="batches timed per setting, after the first")
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--workers", default="0,2")
    args = ap.parse_args()

    t = time.perf_counter()
    source = photo_source("train", args.root)
    load_s = time.perf_counter() - t
    scale = (0.12, 1.0)
    load_before = os.getloadavg()
    default_threads = torch.get_num_threads()
    # The trainer's setting (default threads), plus workers=0 with one thread: on busy cores
    # torch's intra-op threads stall on small per-batch work such as collating.
    settings = [(int(w), default_threads) for w in args.workers.split(",")] + [(0, 1)]
    rows = [
        measure(source, int(s), w, args.batches, args.batch_size, scale, t)
        for s in args.sizes.split(",")
        for w, t in settings
    ]
    torch.set_num_threads(default_threads)
    result = {
        "what": "InpaintDataset(photo_source('train'), mixture masks) through a DataLoader",
        "photos": len(source),
        "photo_load_s": round(load_s, 2),
        "scale": list(scale),
        "cpu_count": os.cpu_count(),
        "torch_threads_default": default_threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "nice": os.nice(0),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "runs": rows,
    }
    result["machine_info"] = machine()
    save_json("data.json", result)
    lines = [
        "# Training-loader throughput (bench/data.py)",
        "",
        f"{result['photos']} train photos (preloaded in {result['photo_load_s']} s), mixture masks, "
        f"crop scale {scale[0]}-{scale[1]}, batch {args.batch_size}, {result['cpu_count']} CPU cores, "
        f"nice {result['nice']}, 1-min load average {result['loadavg_1min_before_after'][0]} before / "
        f"{result['loadavg_1min_before_after'][1]} after (other jobs were running).",
        "",
        "| patch | workers | main-process torch threads | samples/s (steady) | first batch (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['size']} | {r['workers']} | {r['torch_threads']} | {r['samples_per_s']} | {r['first_batch_s']} |"
        for r in rows
    ]
    save_text("data.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
