"""Classical inpainting methods, the peers fillgap is measured against (and the FFC net's starting fill).

All take and return RGB uint8 H x W x 3 with a hole mask H x W (> 0 = missing).
OpenCV's Telea/NS/FSR treat the three channels independently, so RGB order needs no BGR swap.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np


def _hole_u8(mask: np.ndarray) -> np.ndarray:
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def telea(image: np.ndarray, mask: np.ndarray, radius: int = 5) -> np.ndarray:
    return cv2.inpaint(np.ascontiguousarray(image), _hole_u8(mask), radius, cv2.INPAINT_TELEA)


def navier_stokes(image: np.ndarray, mask: np.ndarray, radius: int = 5) -> np.ndarray:
    return cv2.inpaint(np.ascontiguousarray(image), _hole_u8(mask), radius, cv2.INPAINT_NS)


def fsr(image: np.ndarray, mask: np.ndarray, mode: str = "fast") -> np.ndarray:
    """OpenCV-contrib frequency selective reconstruction (strongest classical method on thin masks)."""
    algo = {"fast": cv2.xphoto.INPAINT_FSR_FAST, "best": cv2.xphoto.INPAINT_FSR_BEST}[mode]
    # A C-contiguous output buffer: OpenCV writes into a copy of any other (zeros_like of a strided
    # view is strided too), so the fill would silently stay black.
    out = np.zeros(image.shape, np.uint8)
    known = 255 - _hole_u8(mask)  # xphoto wants 255 = known pixel
    cv2.xphoto.inpaint(np.ascontiguousarray(image), known, out, algo)
    return out


def biharmonic(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic  # slow import: only when used

    out = inpaint_biharmonic(image.astype(np.float64) / 255.0, np.asarray(mask) > 0, channel_axis=-1)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def diffusion(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """fillgap's own multi-scale harmonic + biharmonic fill (``fillgap.models.prior``), the start the
    shipped network refines; torch, so it also runs on a GPU and inside an exported model."""
    import torch

    from .models.prior import DiffusionPrior

    hole = torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None, None]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        out = DiffusionPrior()(x * (1 - hole), hole)
    return (out[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def mean_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The trivial baseline: every hole pixel becomes the mean colour of the known pixels."""
    hole = np.asarray(mask) > 0
    out = image.copy()
    if hole.all():
        out[:] = 128
    elif hole.any():
        out[hole] = np.round(image[~hole].reshape(-1, image.shape[2]).mean(axis=0)).astype(np.uint8)
    return out


CLASSICAL: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "opencv-telea": telea,
    "opencv-ns": navier_stokes,
    "opencv-fsr": fsr,
    "skimage-biharmonic": biharmonic,
    "fillgap-diffusion": diffusion,
    "mean-fill": mean_fill,
}
