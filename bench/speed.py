"""Seconds per image on this machine's CPU, parameters and FLOPs for every model and classical peer.

    python bench/speed.py            # writes bench/results/speed.{json,md}

Each method fills the same photo with the same ~20 % thick-stroke mask through the real
path users get (``fillgap.inpaint`` / the classical functions), after one warm-up call;
the figure is the median of ``--repeats`` runs. FLOPs are counted by PyTorch's
FlopCounterMode for one forward pass at that size (convolutions and matmuls; the FFTs of
the spectral transform are not counted, so FFC figures are a slight underestimate).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fillgap.checkpoint import DEFAULT_WEIGHTS, load_model
from fillgap.classical import CLASSICAL
from fillgap.data import bundled_photos
from fillgap.fill import inpaint
from fillgap.masks import MaskGenerator, hole_ratio
from fillgap.models import create_model

from _common import RESULTS, machine, save_json, save_text


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def flops(model, size: int) -> int:
    x, m = torch.rand(1, model.channels, size, size), torch.zeros(1, 1, size, size)
    m[..., : size // 4, : size // 4] = 1
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, m)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "speed")
    args = ap.parse_args()
    photo = bundled_photos("test")[0]
    models = {"fillgap default (ffc-small)": load_model() if DEFAULT_WEIGHTS.exists() else create_model("ffc-small"),
              "ffc-base (untrained)": create_model("ffc-base"),
              "seed-color-ae (untrained)": create_model("seed-color-ae")}
    rows = []
    for size in args.sizes:
        img = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
        mask = MaskGenerator("thick", seed=5)(size, size, 0, 0)
        for name, model in models.items():
            model.eval()
            rows.append({"method": name, "size": size, "seconds": timed(lambda: inpaint(img, mask, model), args.repeats),
                         "params": sum(p.numel() for p in model.parameters()),
                         "gflops": flops(model, model.fixed_size or size) / 1e9, "hole": hole_ratio(mask)})
        for name, fn in CLASSICAL.items():
            reps = 1 if name == "skimage-biharmonic" else args.repeats
            rows.append({"method": name, "size": size, "seconds": timed(lambda: fn(img, mask), reps),
                         "params": 0, "gflops": None, "hole": hole_ratio(mask)})
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu_count": __import__("os").cpu_count(),
            "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_json(args.out.with_suffix(".json"), {"meta": meta, "rows": rows})
    lines = [f"CPU, {meta['threads']} torch threads, hole {rows[0]['hole'] * 100:.0f} % (thick strokes); "
             "median seconds per image through the real fill path", "",
             "| method | params | " + " | ".join(f"s @ {s}x{s} | GFLOPs @ {s}" for s in args.sizes) + " |",
             "|---|---|" + "---|---|" * len(args.sizes)]
    for name in dict.fromkeys(r["method"] for r in rows):
        cells = []
        for s in args.sizes:
            r = next(r for r in rows if r["method"] == name and r["size"] == s)
            cells += [f"{r['seconds']:.3f}", "-" if r["gflops"] is None else f"{r['gflops']:.1f}"]
        params = next(r["params"] for r in rows if r["method"] == name)
        lines.append(f"| {name} | {params / 1e6:.2f} M | " + " | ".join(cells) + " |")
    save_text(args.out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
