"""Which start should the network refine? The classical priors alone, side by side.

    python bench/quality.py --protocol v2     # first: scores every method, the priors among them
    python bench/prior_ablation.py [--timing-cases 8]

For each prior (OpenCV Telea, scikit-image biharmonic, OpenCV-contrib FSR, and fillgap's own
torch diffusion of ``fillgap.models.prior``): hole PSNR / SSIM / detail ratio per mask kind on
protocol v2 at 256 px, read from bench/results/quality-v2-256.json (the same run as the
networks), next to the networks that refine a prior, and milliseconds per 512 px picture
(the protocol's 512 px cases, one thread, methods interleaved case by case, median).
Writes bench/results/prior-ablation.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from fillgap.methods import METHODS
from fillgap.eval import environment, load_images, load_protocol, make_cases

from _common import RESULTS, save_json, save_text

PRIORS = ["opencv-telea", "skimage-biharmonic", "opencv-fsr", "fillgap-diffusion"]


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
            METHODS[name].fn(image, case.mask > 0)
            times[name].append(time.perf_counter() - start)
    return {m: 1000 * statistics.median(t) for m, t in times.items()}


def time_networks(protocol: str, count: int, names: list[str]) -> dict[str, float]:
    """The shipped networks through the same pipeline as ``fillgap fill`` (prior included)."""
    from fillgap.fill import inpaint
    from fillgap.methods import get_method

    proto = load_protocol(protocol)
    images = load_images(proto, 512)
    cases = make_cases(proto, 512)
    chosen = cases[:: max(1, len(cases) // count)][:count]
    out = {}
    for name in names:
        method = get_method(name)
        inpaint(images[chosen[0].image], chosen[0].mask, method)  # warm-up
        times = []
        for case in chosen:
            start = time.perf_counter()
            inpaint(images[case.image], case.mask, method)
            times.append(time.perf_counter() - start)
        out[name] = 1000 * statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="v2")
    parser.add_argument("--timing-cases", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    source = RESULTS / f"quality-{args.protocol}-256.json"
    result = json.loads(source.read_text()) if source.exists() else {}
    names = [m["name"] for m in result.get("methods", [])]
    if not set(PRIORS) <= set(names):
        print(
            f"prior_ablation: run `python bench/quality.py --protocol {args.protocol}` first "
            f"({source} lacks {', '.join(sorted(set(PRIORS) - set(names)))})",
            file=sys.stderr,
        )
        return 1
    networks = [n for n in names if n.startswith("fillgap-") and n not in PRIORS]
    by_kind = result["summary"]["by_kind"]
    ms = time_at_512(args.protocol, args.timing_cases)
    kinds = list(by_kind)
    lines = [
        f"# Prior ablation: protocol {args.protocol}, 256 px quality, 512 px timing",
        "",
        f"Command: `python bench/prior_ablation.py {' '.join(argv or sys.argv[1:])}".rstrip() + "`; scores from "
        f"`{result['command']}` (load then {result['environment']['load_average']}).",
        "",
        "Each cell: hole PSNR (dB) / hole SSIM / hole detail ratio. Milliseconds: median per 512x512 picture, "
        f"one thread, {args.timing_cases} protocol cases, load average at the end "
        f"{environment()['load_average']}. The shipped networks (last rows) refine fillgap-diffusion; "
        "their milliseconds include it.",
        "",
        "| prior | " + " | ".join(kinds) + " | all | ms per 512 px |",
        "|---|" + "---|" * (len(kinds) + 2),
    ]
    overall = result["summary"]["overall"]
    ms.update(time_networks(args.protocol, args.timing_cases, networks))
    for m in PRIORS + networks:
        cells = [by_kind[k][m] for k in kinds] + [overall[m]]
        fmt = " | ".join(f"{c['hole_psnr']:.2f} / {c['hole_ssim']:.3f} / {c['hole_detail']:.2f}" for c in cells)
        lines.append(f"| {m} | {fmt} | {ms[m]:.0f} |")
    save_text("prior-ablation.md", "\n".join(lines))
    save_json(
        "prior-ablation.json",
        {
            "by_kind": {k: {m: by_kind[k][m] for m in PRIORS + networks} for k in kinds},
            "overall": {m: overall[m] for m in PRIORS + networks},
            "ms_per_512": ms,
            "source": str(source.name),
            "environment": environment(),
        },
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
