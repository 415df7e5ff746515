"""How far a fill moves with the thread count: the shipped model on the 3 bundled held-out photos
(384 x 512 crops, a box and a scratch), filled in fresh processes at 1 and 2 threads for each
runtime; and with one thread and fp32, what `fillgap fill --deterministic` runs.

    python bench/determinism.py          # writes bench/results/determinism.{md,json}
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import RESULTS, machine, save_json, save_text

CHILD = """
import sys, numpy as np, torch
from fillgap import inpaint
from fillgap.data import bundled_photos
torch.set_num_threads(int(sys.argv[1]))
outs, holes = [], []
for photo in bundled_photos("test"):
    img = np.ascontiguousarray(photo[:384, :512])
    hole = np.zeros(img.shape[:2], np.uint8)
    hole[100:220, 150:330] = 255
    hole[300:310, :] = 255
    outs.append(inpaint(img, hole, "fillgap-network", runtime=sys.argv[2]))
    holes.append(hole > 0)
np.savez(sys.argv[3], fills=np.stack(outs), holes=np.stack(holes))
"""


def fills(threads: int, runtime: str, folder: Path) -> dict:
    path = folder / f"{runtime}-{threads}.npz"
    subprocess.run([sys.executable, "-c", CHILD, str(threads), runtime, str(path)], check=True)
    data = np.load(path)
    return {"fills": data["fills"].astype(int), "holes": data["holes"]}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in ("auto", "torch"):
            one, two = fills(1, runtime, Path(tmp)), fills(2, runtime, Path(tmp))
            values = one["holes"].sum() * 3
            diff = np.abs(one["fills"] - two["fills"])
            rows.append(
                {
                    "runtime": runtime,
                    "hole_values": int(values),
                    "differing": int((diff > 0).sum()),
                    "share": float((diff > 0).sum() / values),
                    "max_levels": int(diff.max()),
                }
            )
    lines = [
        "# Fills against the thread count (bench/determinism.py)",
        "",
        "The shipped model on the 3 bundled held-out photos (384 x 512 crops, a 120 x 180 box and a 10 px "
        "scratch), each filled in a fresh process at 1 and at 2 threads; differences over the hole's "
        "values (pixels x 3 channels). `fillgap fill --deterministic` runs one thread in fp32 (`torch`), so "
        "its bytes do not depend on the load, the engine or the run.",
        "",
        "| runtime | hole values | differing | share | largest difference (levels) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runtime']} | {r['hole_values']:,} | {r['differing']:,} | {r['share'] * 100:.3f} % | "
            f"{r['max_levels']} |"
        )
    save_text(RESULTS / "determinism.md", "\n".join(lines))
    save_json(RESULTS / "determinism.json", {"rows": rows, "machine": machine()})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
