"""Export a training run as the shipped default model, with its model card.

    python bench/export_default.py runs/ffc-small-photos [--command "fillgap train ..."]

Writes src/fillgap/weights/ffc-default.safetensors (weights + how to rebuild them in the
metadata) and src/fillgap/weights/MODEL_CARD.md: the training command, seed, the hash of
the training photo list, steps, wall time, the run's validation scores, and the quality
table from bench/results/quality-256.md when it exists (run bench/quality.py after this).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from fillgap.checkpoint import DEFAULT_WEIGHTS, export_weights, load_model, read_checkpoint
from fillgap.data.photos import photo_list

ROOT = Path(__file__).resolve().parents[1]


def train_list_hash() -> tuple[str, int]:
    """sha256 over 'name,sha256' of the train-split photos, in list order."""
    rows = [r for r in photo_list() if r["split"] == "train"]
    text = "\n".join(f"{r['name']},{r.get('sha256', '')}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest(), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--command", default=None, help="the exact training command(s), for the card")
    args = ap.parse_args()
    ckpt = read_checkpoint(args.run / "last.pt")
    cfg = ckpt["config"]
    records = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_psnr_hole" in r]
    seconds = sum(r.get("seconds", 0) for r in records if "seconds" in r)
    train_time = max((r["time"] for r in records if "time" in r), default=0.0)
    data_hash, n_train = train_list_hash()
    model = load_model(args.run / "last.pt")
    command = args.command or f"fillgap train --config {args.run}/config.yaml"
    export_weights(DEFAULT_WEIGHTS, model, trained_steps=ckpt["step"], seed=cfg["seed"],
                   train_photo_list_sha256=data_hash, config=json.dumps(cfg))
    params = sum(p.numel() for p in model.parameters())
    quality = ROOT / "bench" / "results" / "quality-256.md"
    card = [
        "# Model card: fillgap default model (`ffc-default.safetensors`)", "",
        f"- Architecture: `{cfg['model']}` {cfg['model_kwargs'] or ''} — LaMa-style fast-Fourier-convolution "
        f"network that refines an OpenCV Telea fill ({params / 1e6:.2f} M parameters, fp32, "
        f"{DEFAULT_WEIGHTS.stat().st_size / 1e6:.1f} MB).",
        f"- Training command: `{command}` (config: `configs/ffc-small-photos.yaml`, data from "
        "`fillgap data prepare --sets photos`).",
        f"- Data: the {n_train} `train` photos of `src/fillgap/data/photos.csv` (list hash sha256 "
        f"`{data_hash[:16]}…` over name,sha256 rows), random multi-scale {cfg['size']}x{cfg['size']} crops "
        f"(scale {cfg['scale'][0]}–{cfg['scale'][1]} of the short side), `{cfg['masks']}` masks.",
        f"- Losses: {cfg['losses']} with hole weight {cfg['hole_weight']}; Adam lr {cfg['lr']} cosine to "
        f"{cfg['lr_final']}; batch {cfg['batch_size']}; seed {cfg['seed']}.",
        f"- Steps: {ckpt['step']} optimiser steps ({ckpt['step'] * cfg['batch_size']:,} patches), "
        f"{train_time / 60:.0f} min of wall time on the 2-core CPU development machine (shared with other work).",
    ]
    if val:
        v = val[-1]
        card.append(f"- Validation (the 8 `val` photos, {cfg['val_samples']} fixed crops+masks at {cfg['size']} px): "
                    f"PSNR {v['val_psnr']:.2f} dB, hole PSNR {v['val_psnr_hole']:.2f} dB.")
    if quality.exists():
        card += ["", "## Scores on the held-out test photos (`python bench/quality.py`)", "", quality.read_text()]
    card += ["", "## Limits", "",
             "Trained on about three dozen photos, mostly landscapes, plants and macro shots, on a CPU for about an "
             "hour: it is a careful correction of a classical fill, not a generative model. It does not invent "
             "objects or faces, and large holes in detailed scenes stay blurry. See DATA.md."]
    (DEFAULT_WEIGHTS.parent / "MODEL_CARD.md").write_text("\n".join(card) + "\n")
    print(f"wrote {DEFAULT_WEIGHTS} and MODEL_CARD.md (step {ckpt['step']})")


if __name__ == "__main__":
    main()
