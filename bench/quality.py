"""Quality benchmark: every method through an evaluation protocol, side by side.

    python bench/quality.py --protocol v2                 # classical peers + the shipped model, 256 px
    python bench/quality.py --protocol v2 --size 512 --methods opencv-telea,fillgap-network   # large-image run
    python bench/quality.py --protocol v2 --model runs/x/last.pt --model other.safetensors
    python bench/quality.py                               # protocol v1 (continuity), 256 px

Writes bench/results/quality-<protocol>-<size>.{md,json,png} (v1: quality-<size>.*, its old name):
tables with hole PSNR / SSIM / detail ratio / seconds, every number, and the picture grid,
replacing earlier results. `--methods` restricts the peers (opencv-fsr takes seconds a picture
at 512 px); the report and the console name the methods that ran. Needs the prepared test
photos (`fillgap data prepare --sets photos`); `--protocol bundled` runs on the photos shipped
in the package instead.
One thread per method by default (`--threads`), so seconds per image compare fairly and do not
swing with whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fillgap.errors import FillgapError
from fillgap.eval import evaluate, parse_method_list, summary_line

from _common import RESULTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="v1", help="v2 | v1 | bundled | a .json file (default v1)")
    parser.add_argument("--size", type=int, default=256, help="256 | 512 (v1, v2)")
    parser.add_argument("--model", action="append", default=[], help="checkpoint to score (repeatable)")
    parser.add_argument("--methods", action="append", help="peers, comma-separated (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="score every k-th case only, a quicker run; pick k coprime with the 16 cells per picture (3, 5, 7)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stem = f"quality-{args.size}" if args.protocol == "v1" else f"quality-{Path(args.protocol).stem}-{args.size}"
    command = "python bench/quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        run = evaluate(
            args.protocol,
            args.size,
            args.model,
            parse_method_list(args.methods),
            out=args.out,
            stem=stem,
            overwrite=True,
            progress=True,
            command=command.strip(),
            threads=args.threads,
            every=args.every,
        )
    except FillgapError as exc:
        print(f"quality: error: {exc}", file=sys.stderr)
        return 1
    for message in run.stale:
        print(f"quality: warning: {message}", file=sys.stderr)
    print("methods run: " + ", ".join(m["name"] for m in run.result["methods"]))
    for name, row in run.result["summary"]["overall"].items():
        print(summary_line(name, row))
    print("wrote " + ", ".join(str(p) for p in run.paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
