"""``fillgap demo``: the whole pipeline in about a minute, on the photos shipped in the package."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .checkpoint import DEFAULT_WEIGHTS, load_model
from .train.config import load_config
from .data import bundled_photos
from .fill import inpaint
from .imageio import write_image
from .masks import MaskGenerator
from .train import Trainer


def run_demo(out: Path, seconds: float = 60.0, size: int = 256) -> Path:
    out = Path(out)
    cfg = load_config(None, dict(model="ffc-tiny", data="bundled", size=96, batch_size=8, epochs=1000,
                                 samples_per_epoch=64, val_samples=8, max_minutes=seconds / 60.0,
                                 losses={"l1": 10.0, "fft": 1.0}, out=str(out / "run"), checkpoint_every=100))
    trainer = Trainer(cfg, overwrite=True)  # the demo's own throwaway run
    summary = trainer.fit()
    print(f"trained ffc-tiny for {summary['seconds']:.0f} s, {summary['step']} steps: "
          f"held-out hole PSNR {summary['val_psnr_hole']:.2f} dB")
    models = {"tiny model (1 min)": trainer.model.eval()}
    if DEFAULT_WEIGHTS.exists():
        models["shipped model"] = load_model()
    held_out = bundled_photos("test")
    rows = []
    for i in range(len(held_out)):
        img = held_out[i]
        s = size / min(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        img = img[:size, :size]
        mask = MaskGenerator(("thick", "box", "medium")[i % 3], seed=123)(size, size, 0, i)
        hole = mask[..., None] > 0
        cells = [np.where(hole, 255, img), np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)]
        cells += [inpaint(img, mask, m) for m in models.values()]
        cells.append(img)
        rows.append(np.concatenate(cells, axis=1))
    labels = ["input", "mask", *models, "original"]
    grid = np.concatenate([_header(labels, size)] + rows, axis=0)
    path = write_image(out / "demo-grid.png", grid, overwrite=True)
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
        cv2.putText(strip, text, (i * width + (width - w) // 2, (height + h) // 2), font, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
        scale = 0.55
    return strip
