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
from fillgap.train.config import load_config
from fillgap.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def train(arm: str, minutes: float, steps: int, out: str) -> dict:
    torch.set_num_threads(1)
    shipped = load_model()  # the start of both arms; its settings (e.g. its prior) are kept
    cfg = load_config(
        ROOT / "configs" / "ffc-small-photos.yaml",
        {
            "model_kwargs": {**shipped.registry_kwargs, "attention": arm == "on"},
            "out": f"{out}-{arm}",
            "max_minutes": minutes,
            "max_steps": steps,
            "batch_size": 8,
            "lr": 2e-4,
            "lr_final": 5e-5,
            "checkpoint_every": 50,
            "log_every": 10,
            "progress": False,
            "val_samples": 16,
        },
    )
    trainer = Trainer(cfg)
    # The shipped weights; the new block keeps its zero init.
    missing, unexpected = trainer.model.load_state_dict(shipped.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("attention.") for k in missing), (missing, unexpected)
    summary = trainer.fit()
    trainer.close()
    print(json.dumps({"arm": arm, **summary}))
    return summary


def score(shard: str, out: str) -> None:
    """Protocol v1 (256 px) cases ``i::n`` through both checkpoints, as ``fillgap eval`` scores them."""
    from fillgap.eval import build_methods, load_images, load_protocol, make_cases
    from fillgap.eval.metrics import image_metrics

    torch.set_num_threads(1)
    i, n = map(int, shard.split("/"))
    protocol = load_protocol("v1")
    images = load_images(protocol, 256)
    cases = make_cases(protocol, 256)[i::n]
    methods = build_methods([], [f"{out}-off/last.pt", f"{out}-on/last.pt"])
    rows = []
    for case in cases:
        row = {"image": case.image, "kind": case.kind, "bucket": case.bucket}
        for m in methods:
            row[m.name] = image_metrics(m.fn(images[case.image], case.mask), images[case.image], case.mask)
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(f"{out}-eval-{i}of{n}.json").write_text(json.dumps(rows))


def report(out: str) -> None:
    import numpy as np

    rows = [
        r for p in sorted(Path(out).parent.glob(Path(out).name + "-eval-*of*.json")) for r in json.loads(p.read_text())
    ]
    names = [k for k in rows[0] if k not in ("image", "kind", "bucket")]
    print(f"{len(rows)} cases")
    for group, sel in [("all", rows)] + [
        (k, [r for r in rows if r["kind"] == k]) for k in dict.fromkeys(r["kind"] for r in rows)
    ]:
        cells = []
        for name in names:
            psnr = np.mean([r[name]["hole_psnr"] for r in sel])
            ssim = np.mean([r[name]["hole_ssim"] for r in sel])
            cells.append(f"{name} {psnr:.3f} / {ssim:.4f}")
        diff = [r[names[1]]["hole_psnr"] - r[names[0]]["hole_psnr"] for r in sel]
        print(
            f"{group:7s} n={len(sel):3d} | "
            + " | ".join(cells)
            + f" | on-off hole PSNR {np.mean(diff):+.3f} (on better in {sum(d > 0 for d in diff)}/{len(sel)})"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["train", "eval", "report"])
    ap.add_argument("--shard", default="0/1", help="eval: cases i::n of the protocol, as i/n")
    ap.add_argument("--arm", choices=["on", "off"])
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default="runs/ablation-attention")
    args = ap.parse_args()
    if args.command == "train":
        train(args.arm, args.minutes, args.steps, args.out)
    elif args.command == "eval":
        score(args.shard, args.out)
    else:
        report(args.out)


if __name__ == "__main__":
    main()
