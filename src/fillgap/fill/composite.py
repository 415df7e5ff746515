"""Step 4 of a fill: put a window's fill back into the picture."""
from __future__ import annotations

import numpy as np
import torch

from .plan import Window


def composite(out: np.ndarray, image: np.ndarray, alpha: np.ndarray, window: Window,
              fill: torch.Tensor | np.ndarray) -> None:
    """Write ``out[window] = a * fill + (1 - a) * image`` where the weight ``a`` > 0, and the
    picture's own pixels where ``a`` = 0 (bit-identical). ``fill``: 3 x h x w (or 1 x 3 x h x w)
    float in [0, 1] for the window; ``image``/``out``: uint8 H x W x 3; ``alpha``: float H x W."""
    if isinstance(fill, torch.Tensor):
        fill = (fill[0] if fill.dim() == 4 else fill).permute(1, 2, 0).cpu().numpy()
    region = image[window.slices]
    a = alpha[window.slices][..., None]
    blended = np.clip(a * fill * 255.0 + (1.0 - a) * region.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    out[window.slices] = np.where(a > 0, blended, region)
