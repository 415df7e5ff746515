"""Training speed with 1 process vs N processes (DDP, gloo on CPU), same global batch.

    nice -n 15 python bench/ddp.py

Runs `fillgap train` (N = 1) and `fillgap train --nproc N` on the bundled photos with the same
config (model, patch size, global batch, seed), --steps optimiser steps each, and reads the
steps' timestamps from metrics.jsonl: steps/s over the steps after the first --warmup ones
(start-up, first-batch and DataLoader costs left out). One process uses every core's thread;
with N processes torch gets cores / N threads each (what `fillgap train --nproc` sets). Writes
bench/results/ddp.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

RESULTS = Path(__file__).with_name("results")


def run(workdir: Path, cfg: dict, nproc: int, threads: int) -> dict:
    out = workdir / f"run-{nproc}"
    cfg_path = workdir / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "fillgap", "train", "--config", str(cfg_path), "--out", str(out)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"training with {nproc} process(es) failed:\n{proc.stderr[-3000:]}")
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [s for s in steps if "lr" in s], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ffc-small")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="global batch (each of N processes takes 1/N)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    cfg = dict(model=args.model, data="bundled", size=args.size, batch_size=args.batch_size, epochs=1,
               samples_per_epoch=args.steps * args.batch_size, max_steps=args.steps, val_samples=4,
               losses={"l1": 10.0, "fft": 1.0}, seed=0, progress=False, log_every=1,
               checkpoint_every=10_000, grid_samples=1, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fillgap-ddp-") as tmp:
        for nproc in (1, args.nproc):
            threads = max(1, cpus // nproc)
            steps, wall = run(Path(tmp), cfg, nproc, threads)
            timed = [s for s in steps if s["step"] > args.warmup]
            span = timed[-1]["time"] - steps[args.warmup - 1]["time"]
            rows.append({"processes": nproc, "threads_per_process": threads, "per_process_batch": args.batch_size // nproc,
                         "steps_timed": len(timed), "steps_per_s": round(len(timed) / span, 3),
                         "samples_per_s": round(len(timed) * args.batch_size / span, 2),
                         "final_loss": round(steps[-1]["loss"], 5), "wall_s_including_startup": round(wall, 1)})
            print(rows[-1], flush=True)
    result = {
        "what": "fillgap train, 1 process vs DDP (gloo, CPU), same global batch and config",
        "config": {k: cfg[k] for k in ("model", "size", "batch_size", "losses", "data")},
        "machine": {"cpus": cpus, "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "note": "measured while a training run and other jobs used the same 2 cores: absolute numbers are "
                "depressed and noisy; with 2 cores, 2 processes can only win what 1 process loses to "
                "thread synchronisation",
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ddp.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'ddp.json'}")


if __name__ == "__main__":
    main()
