"""Step 1 of a fill: any mask -> the float hole weights the other steps use."""

from __future__ import annotations

import numbers

import cv2
import numpy as np

from ..errors import FillgapError, did_you_mean
from ..masks import dilate as dilate_mask

BLENDS = ("hard", "soft")
MAX_DILATE = 1000  # px; larger kernels take minutes and mean "the whole picture" anyway


def as_mask(mask: np.ndarray) -> np.ndarray:
    """Any mask array (bool, uint8 0-255, uint16 0-65535, float 0-1; H x W or H x W x 1) as float32 H x W in [0, 1]."""
    try:
        mask = np.asarray(mask)
    except Exception:  # noqa: BLE001 - ragged lists and the like
        raise FillgapError("a mask must be an array (H x W) of numbers") from None
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise FillgapError(f"a mask must be one channel (H x W), got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.float32)
    if mask.dtype == np.uint8:
        return np.multiply(mask, np.float32(1 / 255), dtype=np.float32)  # one float array, not two
    if mask.dtype == np.uint16:  # a 16-bit mask: 65535 = hole, as 255 is for 8 bits
        return np.multiply(mask, np.float32(1 / 65535), dtype=np.float32)
    if not (np.issubdtype(mask.dtype, np.number)):
        raise FillgapError(f"a mask must hold numbers, got {mask.dtype}")
    mask = mask.astype(np.float32)
    if not np.isfinite(mask).all():
        raise FillgapError("the mask holds NaN or infinite values (use 0 = keep, 1 = hole)")
    return np.clip(mask, 0.0, 1.0)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Scale a float mask to ``shape`` (H, W) so that no hole pixel is lost.

    Shrinking averages areas (a 1-px stroke on a 4x larger mask becomes a 0.25 grey stroke,
    still > 0, so still a hole); enlarging interpolates linearly (every covered pixel > 0).
    """
    h, w = shape
    if mask.shape == (h, w):
        return mask
    shrink = h * w < mask.shape[0] * mask.shape[1]
    out = cv2.resize(
        np.ascontiguousarray(mask, np.float32), (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return np.clip(out, 0.0, 1.0)


def mask_for(
    mask: np.ndarray,
    shape: tuple[int, int],
    resize: bool = False,
    label: object = "the mask",
    hint: str = "pass --resize-mask to scale it",
) -> np.ndarray:
    """``mask`` for a picture of ``shape`` (H, W): as it is when the sizes match, scaled by
    ``resize_mask`` (thin strokes survive) when ``resize``, else a one-line error naming both sizes
    and ``hint`` (the CLI's flag; the server names its form field). The API, the CLI, the server
    and Ray all check a mask's size here."""
    h, w = shape
    if mask.shape[:2] == (h, w):
        return mask
    if not resize:
        raise FillgapError(f"{label} is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h} ({hint})")
    return resize_mask(mask, (h, w))


def check_dilate(dilate) -> int:
    if isinstance(dilate, bool) or not isinstance(dilate, numbers.Integral):
        raise FillgapError(f"dilate must be a whole number of pixels, got {dilate!r}")
    if not 0 <= dilate <= MAX_DILATE:
        raise FillgapError(f"dilate must be between 0 and {MAX_DILATE} pixels, got {dilate}")
    return int(dilate)


def check_blend(blend) -> str:
    if blend not in BLENDS:
        raise FillgapError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}{did_you_mean(blend, BLENDS)}")
    return blend


def prepare_mask(
    mask: np.ndarray, shape: tuple[int, int], dilate: int = 0, blend: str = "hard", resize: bool = False
) -> np.ndarray:
    """H x W weights for a picture of ``shape``: 0 = keep, > 0 = hole; float32 in [0, 1] for the
    soft blend, bool (True = replaced) for the hard one (a quarter of the memory on big pictures).

    ``resize``: scale a mask of another size (``resize_mask``); otherwise a size mismatch is an
    error. ``dilate``: grow the hole by this many pixels (grey levels kept). ``blend``:
    ``hard`` makes every pixel > 0 a full hole (anti-aliased edges leave no ghost outline),
    ``soft`` keeps grey as the weight of the fill against the original.
    """
    dilate, blend = check_dilate(dilate), check_blend(blend)
    h, w = shape
    raw = np.asarray(mask)
    if blend == "hard" and not dilate and raw.shape == (h, w) and raw.dtype in (np.uint8, bool):
        return raw > 0  # the common case, without a float copy of the mask first
    alpha = mask_for(as_mask(mask), (h, w), resize, "mask", "resize_mask=True scales it")
    if dilate:
        alpha = dilate_mask(alpha, dilate)
    return alpha > 0 if blend == "hard" else alpha
