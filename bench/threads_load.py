"""A fill while another program keeps one core busy, against the same fill on an idle machine.

    python bench/threads_load.py          # writes bench/results/threads-load.{json,md}

Each setting runs in its own process (OpenMP reads its wait policy once, when torch loads):
- ``torch default``: torch imported before fillgap, so OpenMP keeps its default spin-then-sleep
  waiting, and torch's default thread count (one per core): what fillgap did before;
- ``passive, all cores``: fillgap's passive waiting, still one thread per core;
- ``fillgap threads``: passive waiting and ``fillgap.runtime.threads``' count (free cores, measured
  before every fill, as ``fillgap fill`` does), fp32 torch; ``fillgap default``: the same with
  the default runtime (``auto``: bf16 where the CPU has it);
- ``onnx, fillgap threads``: the same policy with the onnx runtime (when the model exports).

For each, the median of ``--repeats`` fills through ``fillgap.inpaint`` (after a warm-up) on an
idle machine, then with a spinning process at this process's priority (one core busy), and
the ratio busy / idle. Machine load (/proc/loadavg) is recorded before and after: on a
shared machine "idle" means "without our spinner", not truly idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")

SETTINGS = {
    "torch default (2 threads, default OpenMP wait)": dict(torch_first=True, threads=0, runtime="torch"),
    "passive wait, one thread per core": dict(torch_first=False, threads=0, runtime="torch"),
    "fillgap threads (passive, free cores), fp32": dict(torch_first=False, threads=None, runtime="torch"),
    "fillgap default (passive, free cores, runtime auto)": dict(torch_first=False, threads=None, runtime="auto"),
    "onnx runtime, fillgap threads": dict(torch_first=False, threads=None, runtime="onnx"),
}

CHILD = r"""
import json, os, statistics, subprocess, sys, time
cfg = json.loads(sys.argv[1])
if cfg["torch_first"]:
    os.environ.pop("OMP_WAIT_POLICY", None)
    import torch  # before fillgap: OpenMP starts with its default waiting
import cv2, numpy as np, torch
import fillgap
from fillgap.data import bundled_photos
from fillgap.masks import MaskGenerator
from fillgap.methods import get_method
from fillgap.runtime.threads import available_cores, set_threads

size, repeats = cfg["size"], cfg["repeats"]
img = cv2.resize(bundled_photos("test")[0], (size, size), interpolation=cv2.INTER_AREA)
mask = MaskGenerator("thick", seed=5)(size, size, 0, 0)
if cfg["threads"] == 0:
    torch.set_num_threads(available_cores())
try:
    method = get_method(cfg["model"], cfg["runtime"])
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))
    sys.exit(0)

def one():
    if cfg["threads"] is None:
        set_threads(None)  # what fillgap fill does: measured now
    t = time.perf_counter()
    fillgap.inpaint(img, mask, method)
    return time.perf_counter() - t, torch.get_num_threads()

def median_of(n):
    one()
    runs = [one() for _ in range(n)]
    return statistics.median(r[0] for r in runs), sorted({r[1] for r in runs})

idle, idle_threads = median_of(repeats)
spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
try:
    time.sleep(0.5)
    busy, busy_threads = median_of(repeats)
finally:
    spinner.kill()
    spinner.wait()
print(json.dumps({"idle_s": idle, "busy_s": busy, "ratio": busy / idle,
                  "threads_idle": idle_threads, "threads_busy": busy_threads}))
"""


def run_setting(cfg: dict, timeout: float) -> dict:
    env = dict(os.environ)
    env.pop("FILLGAP_THREADS", None)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, env=env, timeout=timeout
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--model", default=None, help="Method spec for fillgap.methods.get_method (default: shipped).")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), help="Subset of the setting names.")
    ap.add_argument("--out", type=Path, default=RESULTS / "threads-load")
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().strip()
    rows = []
    for name in args.settings:
        cfg = dict(SETTINGS[name], size=args.size, repeats=args.repeats, model=args.model)
        t = time.time()
        res = run_setting(cfg, timeout=1800)
        rows.append({"setting": name, **res, "wall_s": time.time() - t})
        print(name, json.dumps(res), flush=True)
    meta = {
        "size": args.size,
        "repeats": args.repeats,
        "model": args.model or "shipped default",
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "command": " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        f"Fill of a {args.size}x{args.size} picture (thick strokes), median of {args.repeats}, "
        f"{meta['cores']} cores; one core kept busy by a spinning process at the same priority. "
        f"Load before: {load_before}; after: {meta['loadavg_after']}.",
        "",
        "| setting | idle s | one core busy s | busy / idle | threads idle / busy |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['setting']} | - | - | - | {r['error'][:80]} |")
        else:
            lines.append(
                f"| {r['setting']} | {r['idle_s']:.3f} | {r['busy_s']:.3f} | {r['ratio']:.2f}x | "
                f"{','.join(map(str, r['threads_idle']))} / {','.join(map(str, r['threads_busy']))} |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
