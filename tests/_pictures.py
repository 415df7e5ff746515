"""A small synthetic picture shared by the pipeline, method and file tests."""

import numpy as np


def picture(h=72, w=96, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=2) % 256
    return np.clip(base + rng.integers(-25, 25, base.shape), 0, 255).astype(np.uint8)
