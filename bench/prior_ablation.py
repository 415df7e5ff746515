"""Which start should the network refine? The classical priors alone, side by side.

    python bench/prior_ablation.py [--protocol v2] [--timing-cases 8]

For each prior (OpenCV Telea, scikit-image biharmonic, OpenCV-contrib FSR, and fillgap's own
torch diffusion of ``fillgap.models.prior``): hole PSNR / SSIM / detail ratio per mask kind on
the protocol at 256 px (through ``fillgap.evaluate``, the same pipeline as ``fillgap fill``),
and milliseconds per 512 px picture (the protocol's 512 px cases, one thread, methods
interleaved case by case, median). Writes bench/results/prior-ablation.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from fillgap.classical import CLASSICAL
from fillgap.evaluate import environment, evaluate, load_images, load_protocol, make_cases

PRIORS = ["opencv-telea", "skimage-biharmonic", "opencv-fsr", "fillgap-diffusion"]
RESULTS = Path(__file__).resolve().parent / "results"


def time_at_512(protocol: str, count: int) -> dict[str, float]:
    proto = load_protocol(protocol)
    images = load_images(proto, 512)
    cases = make_cases(proto, 512)
    step = max(1, len(cases) // count)
    chosen = cases[::step][:count]
    times: dict[str, list[float]] = {m: [] for m in PRIORS}
    for case in chosen:
        image = images[case.image]
        for name in PRIORS:
            start = time.perf_counter()
            CLASSICAL[name](image, case.mask > 0)
            times[name].append(time.perf_counter() - start)
    return {m: 1000 * statistics.median(t) for m, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="v2")
    parser.add_argument("--timing-cases", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run = evaluate(args.protocol, 256, methods=PRIORS, progress=True, threads=1)
    by_kind = run.result["summary"]["by_kind"]
    ms = time_at_512(args.protocol, args.timing_cases)
    kinds = list(by_kind)
    lines = [f"# Prior ablation: protocol {args.protocol}, 256 px quality, 512 px timing", "",
             f"Command: `python bench/prior_ablation.py {' '.join(argv or sys.argv[1:])}".rstrip() + "`", "",
             "Each cell: hole PSNR (dB) / hole SSIM / hole detail ratio. Milliseconds: median per 512x512 picture, "
             f"one thread, {args.timing_cases} protocol cases; load average at the end "
             f"{environment()['load_average']}.", "",
             "| prior | " + " | ".join(kinds) + " | all | ms per 512 px |",
             "|---|" + "---|" * (len(kinds) + 2)]
    overall = run.result["summary"]["overall"]
    for m in PRIORS:
        cells = [by_kind[k][m] for k in kinds] + [overall[m]]
        fmt = " | ".join(f"{c['hole_psnr']:.2f} / {c['hole_ssim']:.3f} / {c['hole_detail']:.2f}" for c in cells)
        lines.append(f"| {m} | {fmt} | {ms[m]:.0f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prior-ablation.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "prior-ablation.json").write_text(json.dumps(
        {"by_kind": {k: {m: by_kind[k][m] for m in PRIORS} for k in kinds},
         "overall": {m: overall[m] for m in PRIORS}, "ms_per_512": ms,
         "environment": environment()}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
