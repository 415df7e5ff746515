"""Training speed with 1 process vs N processes (DDP, gloo on CPU), same global batch.

    nice -n 15 python bench/ddp.py

Runs `fillgap train` (N = 1) and `fillgap train --nproc N` on the bundled photos with the same
config (model, patch size, global batch, seed), --steps optimiser steps each, and reads the
steps' timestamps from metrics.jsonl: steps/s over the steps after the first --warmup ones
(start-up, first-batch and DataLoader costs left out). One process uses every core's thread;
with N processes torch gets cores / N threads each (what `fillgap train --nproc` sets).

CPU per step: each setting also runs --short steps; the difference of the two runs' CPU time
(all processes: launcher and ranks) over the difference in steps is the CPU one optimiser step
costs, start-up excluded. On a machine that other jobs keep busy, wall-clock steps/s mostly
measures them; CPU per step still shows what N processes add (gradient all-reduce, BatchNorm
synchronisation, duplicated per-process work). Writes bench/results/ddp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import RESULTS, machine, save_json


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(workdir: Path, cfg: dict, nproc: int, threads: int):
    """(per-step metrics, wall seconds, CPU seconds of every process it started)."""
    out = workdir / f"run-{nproc}-{cfg['max_steps']}-{cfg['sync_bn']}"
    cfg_path = workdir / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "fillgap", "train", "--config", str(cfg_path), "--out", str(out)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    if proc.returncode:
        raise SystemExit(f"training with {nproc} process(es) failed:\n{proc.stderr[-3000:]}")
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [s for s in steps if "lr" in s], wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ffc-small")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="global batch (each of N processes takes 1/N)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--short", type=int, default=5, help="steps of the second run (CPU per step by difference)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians reported")
    args = ap.parse_args()
    load_start = os.getloadavg()
    cpus = os.cpu_count() or 1
    cfg = dict(
        model=args.model,
        data="bundled",
        size=args.size,
        batch_size=args.batch_size,
        epochs=1,
        samples_per_epoch=args.steps * args.batch_size,
        max_steps=args.steps,
        val_samples=4,
        losses={"l1": 10.0, "fft": 1.0},
        seed=0,
        progress=False,
        log_every=1,
        checkpoint_every=10_000,
        grid_samples=1,
        device="cpu",
    )
    settings = ((1, True), (args.nproc, True), (args.nproc, False))  # last: BatchNorm per rank, for its cost
    runs: dict[tuple, list[dict]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="fillgap-ddp-") as tmp:
        for _ in range(args.repeats):  # interleaved rounds: a burst of load elsewhere hits every setting
            for nproc, sync_bn in settings:
                threads = max(1, cpus // nproc)
                setting = {**cfg, "sync_bn": sync_bn}
                steps, wall, cpu = run(Path(tmp), setting, nproc, threads)
                _, _, cpu_short = run(Path(tmp), {**setting, "max_steps": args.short}, nproc, threads)
                span = steps[-1]["time"] - steps[args.warmup - 1]["time"]
                runs[(nproc, sync_bn)].append(
                    {
                        "steps_per_s": (args.steps - args.warmup) / span,
                        "cpu_s_per_step": (cpu - cpu_short) / (args.steps - args.short),
                        "final_loss": steps[-1]["loss"],
                        "wall": wall,
                    }
                )
                print(nproc, sync_bn, runs[(nproc, sync_bn)][-1], flush=True)
    rows = []
    for (nproc, sync_bn), rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("steps_per_s", "cpu_s_per_step")}
        rows.append(
            {
                "processes": nproc,
                "sync_bn": sync_bn if nproc > 1 else None,
                "threads_per_process": max(1, cpus // nproc),
                "per_process_batch": args.batch_size // nproc,
                "steps_timed": args.steps - args.warmup,
                "steps_per_s_median": round(med["steps_per_s"], 3),
                "samples_per_s_median": round(med["steps_per_s"] * args.batch_size, 2),
                "cpu_s_per_step_median": round(med["cpu_s_per_step"], 3),
                "steps_per_s_rounds": [round(r["steps_per_s"], 3) for r in rs],
                "cpu_s_per_step_rounds": [round(r["cpu_s_per_step"], 3) for r in rs],
                "final_loss": round(rs[-1]["final_loss"], 5),
            }
        )
    result = {
        "what": "fillgap train, 1 process vs DDP (gloo, CPU), same global batch and config",
        "config": {k: cfg[k] for k in ("model", "size", "batch_size", "losses", "data")},
        "machine": machine(load_average_at_start=load_start),
        "note": "2-core machine shared with other jobs (test suites, benchmarks): wall-clock numbers are "
        "noisy, see the rounds; CPU per step is steadier. With 2 cores, 2 processes can only win "
        "what 1 process loses to thread synchronisation",
        "rows": rows,
    }
    save_json("ddp.json", result)
    print(f"wrote {RESULTS / 'ddp.json'}")


if __name__ == "__main__":
    main()
