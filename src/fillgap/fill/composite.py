"""Step 4 of a fill: put a window's fill back into the picture."""

from __future__ import annotations

import numpy as np

from .._lazy import lazy
from .tensors import round_to_uint8_
from .plan import Window

torch = lazy("torch")  # not for the uint8 fills of classical methods (``_composite_array``)


def composite(
    out: np.ndarray,
    image: np.ndarray,
    alpha: np.ndarray,
    window: Window,
    fill: torch.Tensor | np.ndarray,
    write: Window | None = None,
) -> None:
    """Write ``out[window] = a * fill + (1 - a) * image`` where the weight ``a`` > 0, and the
    picture's own pixels where ``a`` = 0 (bit-identical). ``fill``: 3 x h x w (or 1 x 3 x h x w)
    float in [0, 1] for the window, overwritten (consumed), or uint8 (rounded already, as
    ``cra`` returns it: full-weight pixels are then the same, grey-weight ones of a soft blend
    may be 1 level off the float path's, rounded twice); ``image``/``out``: uint8 H x W x 3;
    ``alpha``: float H x W weights, or bool (hard blend). ``write``: only this part of ``window``
    is written (a tile's own pixels; its margin belongs to other tiles).

    A uint8 numpy ``fill`` (h x w x 3, a classical method's own output) is composited without torch,
    to the same bytes as its float form ``fill / 255`` (``_composite_array``)."""
    if isinstance(fill, np.ndarray) and fill.dtype == np.uint8:
        return _composite_array(out, image, alpha, window, fill, write)
    if isinstance(fill, np.ndarray):
        fill = torch.from_numpy(fill).permute(2, 0, 1)
    fill = (fill[0] if fill.dim() == 4 else fill).detach().cpu()
    if write is not None and write != window:
        fill = fill[
            :, write.top - window.top : write.bottom - window.top, write.left - window.left : write.right - window.left
        ]
        window = write
    rounded_already = fill.dtype == torch.uint8
    if not rounded_already:
        fill = fill.float()
    region, target = image[window.slices], out[window.slices]
    a = alpha[window.slices]
    # Full-weight pixels (all of them in the hard blend): the fill, rounded; no float copy of
    # the window's other pixels, which a 12 MP picture's large window cannot afford.
    full = a >= 1
    part = (a > 0) & ~full if a.dtype != bool else None
    if part is not None and part.any():  # grey weights (soft blend): blend those pixels alone
        ys, xs = np.nonzero(part)
        w = a[ys, xs][:, None].astype(np.float32)
        f = fill[:, torch.from_numpy(ys), torch.from_numpy(xs)].T.float().numpy()  # 0-255 scale
        if not rounded_already:
            f *= 255.0
        target[ys, xs] = np.clip(w * f + (1.0 - w) * region[ys, xs].astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    # In place: the fill is consumed here (a window's float copy is what big pictures cannot afford).
    if not rounded_already:
        fill = round_to_uint8_(fill)
    rounded = fill.permute(1, 2, 0).numpy()
    np.copyto(target, rounded, where=full[..., None])


def _composite_array(
    out: np.ndarray, image: np.ndarray, alpha: np.ndarray, window: Window, fill: np.ndarray, write: Window | None = None
) -> None:
    """``composite`` of a uint8 h x w x 3 fill in numpy, giving the bytes of the float route on
    ``fill / 255``: in float32, v / 255 * 255 is exactly v for every v (tests/test_lazy_import.py
    checks all 256), so full-weight pixels are the fill itself and grey-weight ones blend v."""
    if write is not None and write != window:
        fill = fill[
            write.top - window.top : write.bottom - window.top, write.left - window.left : write.right - window.left
        ]
        window = write
    region, target, a = image[window.slices], out[window.slices], alpha[window.slices]
    full = a >= 1
    part = (a > 0) & ~full if a.dtype != bool else None
    if part is not None and part.any():
        ys, xs = np.nonzero(part)
        w = a[ys, xs][:, None].astype(np.float32)
        f = fill[ys, xs].astype(np.float32)
        target[ys, xs] = np.clip(w * f + (1.0 - w) * region[ys, xs].astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    np.copyto(target, fill, where=full[..., None])
