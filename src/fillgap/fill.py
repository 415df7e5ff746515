"""Filling holes in pictures of any size: the one place where the strategy lives.

``inpaint(image, mask, model)``: image uint8 H x W x 3, mask H x W (float in [0, 1] or
uint8 0-255; > 0 = hole), returns uint8 H x W x 3.

Strategy:
1. Empty mask: the input comes back unchanged, no network call.
2. Crop: only a window around the hole's bounding box is processed (the box grown by a
   context margin of half its size, at least 32 px), so a small scratch on a 12 MP photo
   costs a small network call.
3. Scale: models with a fixed input size (the seed autoencoders) get the window resized
   to that size. Fully convolutional models (FFC) run at the window's own resolution up
   to ``max_side`` pixels (default 1024) and are downscaled beyond, then the result is
   upscaled back. Then the window is reflect-padded to the model's size multiple.
4. Composite: ``out = a * fill + (1 - a) * input`` with ``a`` the mask's grey level; the
   network itself saw every pixel with ``a > 0`` as missing, so no trace of the removed
   object survives at a soft edge (no halo). Pixels with ``a = 0`` are copied, so they are
   bit-identical to the input.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import FillgapError
from .imageio import mask_to_tensor, to_tensor
from .masks import dilate as dilate_mask
from .models import InpaintModel

DEFAULT_MAX_SIDE = 1024


def as_mask(mask: np.ndarray) -> np.ndarray:
    """Any mask array (bool, uint8 0-255, float 0-1; H x W or H x W x 1) as float32 H x W in [0, 1]."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise FillgapError(f"a mask must be one channel (H x W), got shape {mask.shape}")
    if mask.dtype == bool:
        return mask.astype(np.float32)
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def hole_window(hole: np.ndarray, margin_frac: float = 0.5, min_margin: int = 32) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the hole's bounding box grown by a context margin."""
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    mh = max(min_margin, int((bottom - top) * margin_frac))
    mw = max(min_margin, int((right - left) * margin_frac))
    h, w = hole.shape
    return max(0, top - mh), min(h, bottom + mh), max(0, left - mw), min(w, right + mw)


@torch.no_grad()
def run_model(model: InpaintModel, image: torch.Tensor, mask: torch.Tensor,
              max_side: int = DEFAULT_MAX_SIDE) -> torch.Tensor:
    """The network's fill of a 1 x C x H x W window at the window's size (scaled and padded as needed)."""
    h, w = image.shape[-2:]
    device = next(model.parameters()).device
    image, mask = image.to(device), mask.to(device)
    if model.fixed_size:
        size = (model.fixed_size, model.fixed_size)
    else:
        s = min(1.0, max_side / max(h, w))
        size = (max(1, round(h * s)), max(1, round(w * s)))
    x, m = image, mask
    if size != (h, w):
        x = F.interpolate(image, size=size, mode="area" if size[0] < h else "bicubic").clamp(0, 1)
        m = F.interpolate(mask, size=size, mode="area" if size[0] < h else "bilinear")
        m = (m > 0).float()  # any part-hole pixel stays a hole after scaling
    k = model.size_multiple
    ph, pw = (-size[0]) % k, (-size[1]) % k
    # At least 2k: a fully convolutional net's reflect padding needs feature maps of 2+ pixels
    # after its downsamplings (a 1x1 or 3x5 picture would otherwise crash inside the network).
    ph, pw = max(ph, 2 * k - size[0]), max(pw, 2 * k - size[1])
    if ph or pw:
        # reflect needs pad < size; replicate handles the tiny windows
        mode = "reflect" if ph < size[0] and pw < size[1] else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
        m = F.pad(m, (0, pw, 0, ph), mode=mode)
    out = model(x, m)[..., : size[0], : size[1]]
    if size != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bicubic").clamp(0, 1)
    return out.cpu()


def _to_model_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    return rgb.mean(axis=2, keepdims=True).round().astype(np.uint8) if channels == 1 else rgb


def inpaint(image: np.ndarray, mask: np.ndarray, model: InpaintModel | str | None = None,
            dilate: int = 0, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Fill the holes of ``image`` (uint8 H x W x 3) marked by ``mask``; see the module doc.

    ``model``: a loaded network, a checkpoint path, or None for the shipped default.
    ``dilate``: grow the hole by this many pixels first (masks that hug the object).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise FillgapError(f"image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    alpha = as_mask(mask)
    if alpha.shape != image.shape[:2]:
        raise FillgapError(f"mask is {alpha.shape[1]}x{alpha.shape[0]} but the image is "
                           f"{image.shape[1]}x{image.shape[0]}")
    if dilate:
        alpha = dilate_mask(alpha, dilate)
    hole = alpha > 0
    if not hole.any():
        return image.copy()
    if not isinstance(model, InpaintModel):
        from .checkpoint import load_model
        model = load_model(model)
    model.eval()
    top, bottom, left, right = hole_window(hole)
    window = image[top:bottom, left:right]
    win_alpha = alpha[top:bottom, left:right]
    x = to_tensor(_to_model_channels(window, model.channels))
    fill = run_model(model, x, mask_to_tensor((win_alpha > 0).astype(np.float32)), max_side)
    fill = fill[0].permute(1, 2, 0).numpy()
    if fill.shape[2] == 1:
        fill = np.repeat(fill, 3, axis=2)
    a = win_alpha[..., None]
    blended = np.clip(a * fill * 255.0 + (1.0 - a) * window.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    out = image.copy()
    out[top:bottom, left:right] = np.where(win_alpha[..., None] > 0, blended, window)
    return out
