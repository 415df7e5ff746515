"""Does the contextual attention block help the FFC network? A short, equal-budget ablation.

Two arms fine-tune the shipped ffc-small weights with the same config, seed and data, one
with the attention block (``model_kwargs: {attention: true}``, zero-initialised, so both
arms start from the very same function) and one without. Both arms run at the same time
(one thread each) until the same wall-clock budget is spent, so the attention arm pays
for its own cost. Then ``fillgap eval --protocol v1`` scores both checkpoints.

    python bench/attention_ablation.py train --arm off &  python bench/attention_ablation.py train --arm on
    fillgap eval --protocol v1 --model runs/ablation-attention-off/last.pt \
        --model runs/ablation-attention-on/last.pt --methods none --threads 1 --out runs/ablation-eval

The checkpoints carry the shipped model's settings (its prior included), so eval rebuilds the
network each arm trained.

bench/results/attention-ablation.md is written by hand from those reports (with the load).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fillgap.checkpoint import load_model
from fillgap.config import load_config
from fillgap.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def train(arm: str, minutes: float, steps: int, out: str) -> dict:
    torch.set_num_threads(1)
    shipped = load_model()  # the start of both arms; its settings (e.g. its prior) are kept
    cfg = load_config(ROOT / "configs" / "ffc-small-photos.yaml", {
        "model_kwargs": {**shipped.registry_kwargs, "attention": arm == "on"}, "out": f"{out}-{arm}",
        "max_minutes": minutes,
        "max_steps": steps, "batch_size": 8, "lr": 2e-4, "lr_final": 5e-5, "checkpoint_every": 50,
        "log_every": 10, "progress": False, "val_samples": 16})
    trainer = Trainer(cfg)
    # The shipped weights; the new block keeps its zero init.
    missing, unexpected = trainer.model.load_state_dict(shipped.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("attention.") for k in missing), (missing, unexpected)
    summary = trainer.fit()
    trainer.close()
    print(json.dumps({"arm": arm, **summary}))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["train"])
    ap.add_argument("--arm", choices=["on", "off"], required=True)
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default="runs/ablation-attention")
    args = ap.parse_args()
    train(args.arm, args.minutes, args.steps, args.out)


if __name__ == "__main__":
    main()
