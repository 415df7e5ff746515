"""Whole commands from a fresh process, as a user runs them: `fillgap --version`, and a 512 x 512
fill with OpenCV Telea and with the shipped model (a bundled held-out photo, a 14 % box hole).

    python bench/startup.py          # writes bench/results/startup.{md,json}; median of 5 runs each
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from _common import RESULTS, load_average, machine, save_json, save_text

FILLGAP = [sys.executable, "-m", "fillgap"]


def seconds(argv: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    from fillgap.data import bundled_photos

    before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Image.fromarray(cv2.resize(bundled_photos("test")[0], (512, 512), interpolation=cv2.INTER_AREA)).save(
            tmp / "p.png"
        )
        hole = np.zeros((512, 512), np.uint8)
        hole[150:330, 150:360] = 255
        Image.fromarray(hole).save(tmp / "m.png")
        fill = [*FILLGAP, "fill", str(tmp / "p.png"), "-m", str(tmp / "m.png"), "-o", str(tmp / "o.png"), "--overwrite"]
        rows = {
            "fillgap --version": seconds([*FILLGAP, "--version"]),
            "fill 512 px, opencv-telea": seconds([*fill, "--model", "opencv-telea"]),
            "fill 512 px, fillgap-network": seconds([*fill, "--model", "fillgap-network"]),
        }
    lines = [
        "# Whole commands (bench/startup.py)",
        "",
        f"Fresh processes, median of 5 each; load average before {before}, after {load_average()}.",
        "",
        "| command | seconds |",
        "|---|---|",
    ] + [f"| {k} | {v:.2f} |" for k, v in rows.items()]
    save_text(RESULTS / "startup.md", "\n".join(lines))
    save_json(RESULTS / "startup.json", {"seconds": rows, "machine": machine()})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
