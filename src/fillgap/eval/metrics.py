"""Image-quality metrics for inpainting, on the whole picture and on the hole alone.

All metrics take RGB uint8 H x W x 3 pictures (what a fill returns) and a hole mask
H x W (> 0 = hole), and work on [0, 1] floats (data range 1):

- ``psnr``, ``hole_psnr``: 10 log10(1 / MSE), MSE over every channel of the whole picture
  or of the hole pixels only; capped at ``PSNR_CAP`` dB (identical pixels) so reports stay finite.
- ``ssim``: torchmetrics' SSIM (11 x 11 Gaussian window, sigma 1.5), the mean of its map
  over the whole picture (the map is full-size: torchmetrics reflect-pads the borders).
- ``hole_ssim``: the mean of the same SSIM map over the hole pixels only.
- ``ms_ssim``: torchmetrics' MS-SSIM (5 scales), only when the short side is above
  ``MS_SSIM_MIN_SIDE`` (smaller pictures cannot be halved four times under the window): else None.
- ``l1``, ``hole_l1``: mean absolute error.
- ``hole_detail``: the hole detail ratio, how much fine texture the fill has next to the truth
  (1.0 = as much, 0 = flat, 2 = twice as much). Grey = ITU-R BT.601 luma
  (0.299 R + 0.587 G + 0.114 B) of the [0, 1] picture; Laplacian = OpenCV's 3 x 3 kernel
  (``cv2.Laplacian`` ksize=1: 4-neighbours minus 4 x centre, borders reflected); the ratio is the
  standard deviation of the fill's Laplacian over the hole's inner pixels divided by the
  original's. Inner pixels: hole pixels whose 4 neighbours are hole too, so the Laplacian sees
  the fill alone (else the seam between a flat fill and textured surroundings counts as
  texture, and a flat colour scores up to 1.4 on thin strokes). Undefined (None, left out of
  means) when the hole has no inner pixel or the original's std is below ``DETAIL_MIN_STD``
  (a flat hole: any texture would be an infinite ratio). PSNR/SSIM/L1 reward a blurry average;
  this says whether the fill is blurry (< 1) or noisier than the truth (> 1).
- ``hole_checker``: the hole checkerboard ratio, whether the fill has a pixel-level grid pattern
  (the artefact of a transposed convolution or a nearest upsampling). The same grey picture
  filtered with the 2 x 2 kernel [[1, -1], [-1, 1]] (``CHECKER_KERNEL``, anchored at its top-left
  pixel: g(y, x) - g(y, x+1) - g(y+1, x) + g(y+1, x+1), borders reflected), its energy (mean of
  squares) over the inner hole pixels whose 2 x 2 footprint is hole too (``checker_region``: the
  cross of ``inner_hole`` leaves out the diagonal neighbour, and on diagonal strokes that seam made
  a flat fill score 0.3), fill divided by original: 1.0 = as much 2 x 2 checker energy as the
  truth, 0 = none (flat or smooth), above 1 = a grid pattern (or noise) the truth has not. None as
  for the detail ratio: no such pixel, or the original's RMS response below ``DETAIL_MIN_STD``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)

from ..errors import FillgapError

PSNR_CAP = 100.0
MS_SSIM_MIN_SIDE = 161  # (11 - 1) * 2**4 < side: torchmetrics' requirement for 5 scales

DETAIL_MIN_STD = 0.5 / 255  # half a grey level: below it the original hole is flat (v1's least: 1.9 / 255)
LUMA_601 = np.array([0.299, 0.587, 0.114])
CHECKER_KERNEL = np.array([[1.0, -1.0], [-1.0, 1.0]])  # a 2 x 2 checkerboard's matched filter

METRICS = ("psnr", "ssim", "ms_ssim", "l1", "hole_psnr", "hole_ssim", "hole_l1", "hole_detail", "hole_checker")


def psnr_from_mse(mse: float) -> float:
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else float(-10.0 * math.log10(mse))


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(SSIM of the picture, H x W map averaged over channels) for 1 x C x H x W in [0, 1]."""
    value, full = structural_similarity_index_measure(pred, target, data_range=1.0, return_full_image=True)
    return float(value), full[0].mean(dim=0)


def _as_double(rgb: np.ndarray) -> torch.Tensor:
    """uint8 H x W x C -> 1 x C x H x W float64 in [0, 1] (float64: a 0.2 error stays exactly 0.2)."""
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float64) / 255.0).permute(2, 0, 1)[None]


def inner_hole(mask: np.ndarray) -> np.ndarray:
    """Hole pixels whose 4 neighbours are hole too (picture borders reflect, as the Laplacian does)."""
    hole = (np.asarray(mask) > 0).astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    # erode's default border keeps border pixels: their reflected neighbour is one already checked
    return cv2.erode(hole, cross).astype(bool)


def laplacian_std(rgb: np.ndarray, region: np.ndarray) -> float:
    """Std of the 3 x 3 Laplacian of the BT.601 grey picture over the ``region`` (bool H x W) pixels."""
    grey = (np.asarray(rgb, np.float64) / 255.0) @ LUMA_601
    lap = cv2.Laplacian(grey, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT_101)
    return float(lap[region].std())


def hole_detail_ratio(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float | None:
    """Fine texture in the filled hole relative to the original's (see the module doc); None if undefined."""
    inner = inner_hole(mask)
    if not inner.any():
        return None
    truth = laplacian_std(target, inner)
    return None if truth < DETAIL_MIN_STD else laplacian_std(pred, inner) / truth


def checker_energy(rgb: np.ndarray, region: np.ndarray) -> float:
    """Mean square of the BT.601 grey picture filtered with ``CHECKER_KERNEL`` over the ``region`` pixels."""
    grey = (np.asarray(rgb, np.float64) / 255.0) @ LUMA_601
    response = cv2.filter2D(grey, cv2.CV_64F, CHECKER_KERNEL, anchor=(0, 0), borderType=cv2.BORDER_REFLECT_101)
    return float(np.mean(response[region] ** 2))


def checker_region(mask: np.ndarray) -> np.ndarray:
    """``inner_hole`` pixels whose ``CHECKER_KERNEL`` footprint (the pixel, right, below, below right;
    borders reflected as the filter's) is all hole."""
    hole = (np.asarray(mask) > 0).astype(np.uint8)
    square = cv2.erode(hole, np.ones((2, 2), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REFLECT_101)
    return inner_hole(mask) & square.astype(bool)


def hole_checker_ratio(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float | None:
    """2 x 2 checkerboard energy in the filled hole relative to the original's (see the module doc);
    None if undefined."""
    inner = checker_region(mask)
    if not inner.any():
        return None
    truth = checker_energy(target, inner)
    return None if truth < DETAIL_MIN_STD**2 else checker_energy(pred, inner) / truth


def image_metrics(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    """Every metric of ``METRICS`` for one filled picture against its original."""
    if pred.shape != target.shape or pred.shape[:2] != np.asarray(mask).shape:
        raise FillgapError(f"metric inputs differ in size: {pred.shape}, {target.shape}, mask {np.shape(mask)}")
    p, t = _as_double(pred), _as_double(target)
    hole = torch.from_numpy(np.asarray(mask) > 0)
    err = p - t
    out: dict[str, float | None] = {"psnr": psnr_from_mse(float(err.pow(2).mean())), "l1": float(err.abs().mean())}
    # SSIM's convolutions in float64 are ~50x slower on CPU; float32 changes them by < 1e-6
    p32, t32 = p.float(), t.float()
    out["ssim"], smap = ssim_map(p32, t32)
    out["ms_ssim"] = None
    if min(pred.shape[:2]) >= MS_SSIM_MIN_SIDE:
        out["ms_ssim"] = float(multiscale_structural_similarity_index_measure(p32, t32, data_range=1.0))
    if hole.any():
        hole_err = err[0][:, hole]  # C x (hole pixels)
        out["hole_psnr"] = psnr_from_mse(float(hole_err.pow(2).mean()))
        out["hole_l1"] = float(hole_err.abs().mean())
        out["hole_ssim"] = float(smap[hole].mean())
    else:
        out["hole_psnr"] = out["hole_l1"] = out["hole_ssim"] = None
    out["hole_detail"] = hole_detail_ratio(pred, target, mask)
    out["hole_checker"] = hole_checker_ratio(pred, target, mask)
    return {k: out[k] for k in METRICS}
