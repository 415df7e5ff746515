"""Export a training run as a shipped model (a shipped network of fillgap.methods: fillgap-<variant>), with its card.

    python tools/export_default.py runs/ffc-small-v3 [--variant network] [--command "fillgap train ..."]
    python tools/export_default.py runs/ffc-small-v2 --variant smooth --init runs/init/first-eb5fb19.safetensors

Writes src/fillgap/weights/<file>.safetensors (weights + how to rebuild them in the metadata)
and its model card: the training command, seed, the hash of the training photo list, steps
and wall time (this run's plus those of the weights it was fine-tuned from, read from their
metadata, so the card adds up the whole history), the run's validation scores, and the
quality table of bench/results/quality-v2-256.md when it exists (run bench/quality.py first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from fillgap.checkpoint import DEFAULT_WEIGHTS, export_weights, load_model, read_checkpoint, weights_metadata
from fillgap.methods import METHODS, shipped_names
from fillgap.data.photos import photo_list
from fillgap.fsutil import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
# The first shipped weights (ffc-small on a Telea start) predate the minutes field: 80 + 55 min.
FIRST_RELEASE_MINUTES = 135.0


def train_list_hash() -> tuple[str, int]:
    """sha256 over 'name,sha256' of the train-split photos, in list order."""
    rows = [r for r in photo_list() if r["split"] == "train"]
    text = "\n".join(f"{r['name']},{r.get('sha256', '')}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest(), len(rows)


def inherited(cfg: dict, init: str | None = None) -> tuple[int, float, str]:
    """Steps and minutes of the weights this run was fine-tuned from (0 when trained from scratch)."""
    init = init or cfg.get("init")
    if not init:
        return 0, 0.0, ""
    path = DEFAULT_WEIGHTS if init == "default" else Path(init)
    if path.suffix != ".safetensors":
        ckpt = read_checkpoint(path)
        return int(ckpt["step"]), 0.0, str(path)
    meta = weights_metadata(path)
    steps = int(meta.get("total_steps", meta.get("trained_steps", 0)))
    minutes = float(meta.get("total_minutes", FIRST_RELEASE_MINUTES if steps else 0.0))
    return steps, minutes, f"{path.name} ({meta.get('model_name')}, {steps} steps)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--variant", choices=sorted(n.removeprefix("fillgap-") for n in shipped_names()), default="network")
    ap.add_argument("--command", default=None, help="the exact training command(s), for the card")
    ap.add_argument(
        "--init",
        default=None,
        help="the weights the run started from, when its config's "
        "`init: default` no longer names them (the default was replaced since)",
    )
    args = ap.parse_args()
    entry = METHODS[f"fillgap-{args.variant}"]
    target = entry.weights
    ckpt = read_checkpoint(args.run / "last.pt")
    cfg = ckpt["config"]
    records = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_psnr_hole" in r]
    # "time" restarts at each (resumed) session: add up each session's last value
    minutes, last = 0.0, 0.0
    for r in records:
        if "time" in r:
            if r["time"] < last:
                minutes += last / 60
            last = r["time"]
    minutes += last / 60
    prev_steps, prev_minutes, parent = inherited(cfg, args.init)
    data_hash, n_train = train_list_hash()
    model = load_model(args.run / "last.pt")
    command = args.command or f"fillgap train --config {args.run}/config.yaml"
    total_steps, total_minutes = prev_steps + ckpt["step"], prev_minutes + minutes
    export_weights(
        target,
        model,
        trained_steps=ckpt["step"],
        total_steps=total_steps,
        total_minutes=round(total_minutes, 1),
        seed=cfg["seed"],
        train_photo_list_sha256=data_hash,
        config=json.dumps(cfg),
    )
    params = sum(p.numel() for p in model.parameters())
    quality = ROOT / "bench" / "results" / "quality-v2-256.md"
    losses = dict(cfg["losses"])
    if cfg.get("adversarial"):
        losses.update(
            adversarial=cfg["adversarial"],
            from_step=cfg.get("adversarial_start", 0),
            feature_matching=cfg.get("feature_matching", 0.0),
            r1=cfg.get("r1"),
        )
    card = [
        f"# Model card: fillgap {args.variant} model (`{target.name}`)",
        "",
        f"- Architecture: `{cfg['model']}` {cfg['model_kwargs'] or ''}: a LaMa-style fast-Fourier-convolution "
        f"network that refines fillgap's pure-torch diffusion fill ({params / 1e6:.2f} M parameters, fp32, "
        f"{target.stat().st_size / 1e6:.1f} MB). Name in the registry: `fillgap-{args.variant}`.",
        f"- Training command: `{command}` (data from `fillgap data prepare --sets photos`).",
        f"- Fine-tuned from: {parent or 'nothing (trained from scratch)'}.",
        f"- Data: the {n_train} `train` photos of `src/fillgap/data/photos.csv` (list hash sha256 "
        f"`{data_hash[:16]}…` over name,sha256 rows), random multi-scale {cfg['size']}x{cfg['size']} crops "
        f"(scale {cfg['scale'][0]}–{cfg['scale'][1]} of the short side), `{cfg['masks']}` masks.",
        f"- Losses: {losses} with hole weight {cfg['hole_weight']}; Adam lr {cfg['lr']} cosine to "
        f"{cfg['lr_final']}; batch {cfg['batch_size']}; seed {cfg['seed']}.",
        f"- Steps: {ckpt['step']} optimiser steps in this run ({ckpt['step'] * cfg['batch_size']:,} patches, "
        f"{minutes:.0f} min of wall time on the 2-core CPU development machine, shared with other work); "
        f"{total_steps} steps and {total_minutes / 60:.1f} h in all, counting the weights it started from.",
    ]
    if val:
        v = val[-1]
        card.append(
            f"- Validation (`val` photos, {cfg['val_samples']} fixed crops+masks at {cfg['size']} px, drawn with "
            f"seed {cfg['seed'] + 1}: runs with other seeds see other crops; compare the test table below): "
            f"PSNR {v['val_psnr']:.2f} dB, hole PSNR {v['val_psnr_hole']:.2f} dB."
        )
    if quality.exists():
        card += [
            "",
            "## Scores on the held-out test photos (`python bench/quality.py --protocol v2`)",
            "",
            "The network runtime cuts the fill's 2 x 2 checkerboard back to the level of its known surroundings "
            "(`fillgap.filters.remove_excess_checker`); these scores include that step.",
            "",
            quality.read_text(),
        ]
    card += [
        "",
        "## Limits",
        "",
        "Trained on a CPU for a few hours on a few hundred photos (mostly landscapes, plants, textures and "
        "macro shots): a careful correction of a smooth classical fill, not a generative model. It does not "
        "invent objects or faces, and large holes in detailed scenes stay smoother than the truth. See DATA.md.",
    ]
    atomic_write_text(target.parent / entry.card, "\n".join(card) + "\n", overwrite=True)
    print(f"wrote {target} and {entry.card} (step {ckpt['step']}, {total_steps} in all)")


if __name__ == "__main__":
    main()
