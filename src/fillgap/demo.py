"""``fillgap demo``: the default method and the shipped network alone fill the held-out photos
shipped in the package, beside a classical peer, in a before/after grid (seconds). ``fillgap demo --train``: the training pipeline
in about a minute (a tiny model, the same photos)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np

from .data import bundled_photos
from .fill import inpaint
from .imageio import write_image
from .masks import MaskGenerator

# What the demo compares: the default (the shipped network with texture copied from the picture),
# the network alone, and OpenCV's Telea (the usual classical baseline; a fraction of a second).
DEMO_METHODS = ("fillgap-texture", "fillgap-network", "opencv-telea")
MASK_KINDS = ("thick", "box", "medium")  # one per photo, in turn: strokes and a block
CELL = (384, 512)  # height, width of a grid cell: the held-out photos are 384 px high


def demo_inputs(height: int = CELL[0], width: int = CELL[1]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(photo, mask) for every held-out photo: scaled to cover ``height`` x ``width``, centre
    crop, and a seeded hole (``MASK_KINDS`` in turn), so every run shows the same fills."""
    photos = bundled_photos("test")
    pairs = []
    for i in range(len(photos)):
        img = photos[i]
        s = max(height / img.shape[0], width / img.shape[1])
        if s != 1.0:
            img = cv2.resize(
                img,
                (math.ceil(img.shape[1] * s), math.ceil(img.shape[0] * s)),
                interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
            )
        top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
        img = np.ascontiguousarray(img[top : top + height, left : left + width])
        pairs.append((img, MaskGenerator(MASK_KINDS[i % len(MASK_KINDS)], seed=123)(height, width, 0, i)))
    return pairs


def hole_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) inside the hole only: outside it every method returns the original."""
    hole = mask > 0
    mse = np.mean((pred[hole].astype(np.float64) - target[hole]) ** 2) / 255.0**2
    return 100.0 if mse <= 1e-10 else -10.0 * math.log10(mse)


def run_demo(out: Path, methods: tuple[str, ...] = DEMO_METHODS, cell: tuple[int, int] = CELL, echo=print) -> Path:
    """Fill the held-out photos with each of ``methods``; write ``out/demo-grid.png`` (columns:
    the photo with its hole, one per method, the original) and print each method's seconds per
    photo and hole PSNR."""
    from .methods import get_method

    pairs = demo_inputs(*cell)
    columns = [[np.where(m[..., None] > 0, 255, img).astype(np.uint8) for img, m in pairs]]
    for name in methods:
        method = get_method(name)  # loading is timed apart from the fills
        fills, seconds = [], []
        for img, mask in pairs:
            start = time.perf_counter()
            fills.append(inpaint(img, mask, method))
            seconds.append(time.perf_counter() - start)
        psnr = np.mean([hole_psnr(f, img, m) for f, (img, m) in zip(fills, pairs)])
        echo(f"{name:16s} {np.mean(seconds):.2f} s per photo, hole PSNR {psnr:.2f} dB (mean of {len(pairs)})")
        columns.append(fills)
    columns.append([img for img, _ in pairs])
    labels = ["input (hole in white)", *methods, "original"]
    rows = [np.concatenate([col[i] for col in columns], axis=1) for i in range(len(pairs))]
    grid = np.concatenate([_header(labels, cell[1])] + rows, axis=0)
    path = write_image(Path(out) / "demo-grid.png", grid, overwrite=True)
    echo("columns: " + " | ".join(labels))
    return path


def run_training_demo(out: Path, seconds: float = 60.0, size: int = 256) -> Path:
    """Train a tiny model for ``seconds`` on the bundled photos and fill held-out ones with it
    (and with the shipped network, the same architecture trained for hours): ``out/train-demo-grid.png``."""
    from .checkpoint import DEFAULT_WEIGHTS, load_model
    from .train.config import load_config
    from .train import Trainer

    out = Path(out)
    cfg = load_config(
        None,
        dict(
            model="ffc-tiny",
            data="bundled",
            size=96,
            batch_size=8,
            epochs=1000,
            samples_per_epoch=64,
            val_samples=8,
            max_minutes=seconds / 60.0,
            losses={"l1": 10.0, "fft": 1.0},
            out=str(out / "run"),
            checkpoint_every=100,
        ),
    )
    trainer = Trainer(cfg, overwrite=True)  # the demo's own throwaway run
    summary = trainer.fit()
    print(
        f"trained ffc-tiny for {summary['seconds']:.0f} s, {summary['step']} steps: "
        f"held-out hole PSNR {summary['val_psnr_hole']:.2f} dB"
    )
    models = {f"tiny model ({seconds:.0f} s)": trainer.model.eval()}
    if DEFAULT_WEIGHTS.exists():
        models["shipped network"] = load_model()
    held_out = bundled_photos("test")
    rows = []
    for i in range(len(held_out)):
        img = held_out[i]
        s = size / min(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        img = img[:size, :size]
        mask = MaskGenerator(MASK_KINDS[i % 3], seed=123)(size, size, 0, i)
        hole = mask[..., None] > 0
        cells = [np.where(hole, 255, img), np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)]
        cells += [inpaint(img, mask, m) for m in models.values()]
        cells.append(img)
        rows.append(np.concatenate(cells, axis=1))
    labels = ["input", "mask", *models, "original"]
    grid = np.concatenate([_header(labels, size)] + rows, axis=0)
    path = write_image(out / "train-demo-grid.png", grid, overwrite=True)
    print("columns: " + " | ".join(labels))
    return path


def _header(labels: list[str], width: int, height: int = 28) -> np.ndarray:
    """A white strip with one centred label per column of the grid."""
    strip = np.full((height, width * len(labels), 3), 255, np.uint8)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1
    for i, text in enumerate(labels):
        while cv2.getTextSize(text, font, scale, thick)[0][0] > width - 8 and scale > 0.3:
            scale -= 0.05
        (w, h), _ = cv2.getTextSize(text, font, scale, thick)
        cv2.putText(
            strip, text, (i * width + (width - w) // 2, (height + h) // 2), font, scale, (0, 0, 0), thick, cv2.LINE_AA
        )
        scale = 0.55
    return strip
