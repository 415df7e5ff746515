"""Quality benchmark: every method through evaluation protocol v1, side by side.

    python bench/quality.py                       # classical peers (+ the shipped model when present), 256 px
    python bench/quality.py --model runs/x/last.pt --model other.safetensors
    python bench/quality.py --size 512            # the large-image run

Writes bench/results/quality-<size>.md (tables), .json (every number) and .png (the picture
grid), replacing earlier results. Needs the prepared test photos (`fillgap data prepare --sets
photos`); `--protocol bundled` runs on the photos shipped in the package instead.
One thread per method by default (`--threads`), so seconds per image compare fairly and do not
swing with whatever else the machine runs.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fillgap.errors import FillgapError
from fillgap.evaluate import evaluate, parse_method_list

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="v1")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", action="append", default=[], help="checkpoint to score (repeatable)")
    parser.add_argument("--methods", action="append", help="peers, comma-separated (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stem = f"quality-{args.size}" if args.protocol == "v1" else f"quality-{Path(args.protocol).stem}-{args.size}"
    command = "python bench/quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        run = evaluate(args.protocol, args.size, args.model, parse_method_list(args.methods), out=args.out,
                       stem=stem, overwrite=True, progress=True, command=command.strip(), threads=args.threads)
    except FillgapError as exc:
        print(f"quality: error: {exc}", file=sys.stderr)
        return 1
    for message in run.stale:
        print(f"quality: warning: {message}", file=sys.stderr)
    for name, row in run.result["summary"]["overall"].items():
        print(f"{name:24s} hole PSNR {row['hole_psnr']:6.2f} dB  hole SSIM {row['hole_ssim']:.3f}  "
              f"{row['seconds']:.3f} s/image")
    print("wrote " + ", ".join(str(p) for p in run.paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
