"""Training throughput: patches per second of a training config on this machine.

    python bench/train_speed.py [--config configs/ffc-small-v2.yaml] [--steps 30] [--threads 2]

Runs the real ``fillgap train`` loop (data loading, prior, network, losses, optimiser,
adversarial part when the config has one) for a few steps into a temporary folder and
reports patches/s over the steps after the first (warm-up), with the machine's load.
Appends a row to bench/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from fillgap.train.config import load_config
from fillgap.train import Trainer

from _common import RESULTS as _RESULTS, machine, save_json

RESULTS = _RESULTS / "train_speed.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/ffc-small-v2.yaml")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        flags = dict(
            out=tmp, max_steps=args.steps, log_every=1, checkpoint_every=10**6, progress=False, device=args.device
        )
        cfg = load_config(args.config, flags)
        trainer = Trainer(cfg)
        trainer.fit()
        times = [
            json.loads(line)["time"]
            for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line
        ]
    seconds = times[-1] - times[0]
    row = {
        "config": args.config,
        "device": str(trainer.device),
        "threads": args.threads,
        "batch_size": cfg.batch_size,
        "size": cfg.size,
        "steps_timed": len(times) - 1,
        "patches_per_s": round((len(times) - 1) * cfg.batch_size / seconds, 2),
        "s_per_step": round(seconds / (len(times) - 1), 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "machine": machine(),
    }
    print(json.dumps(row))
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    save_json(RESULTS, rows + [row])


if __name__ == "__main__":
    main()
