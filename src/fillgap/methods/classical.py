"""Classical inpainting methods, the peers fillgap is measured against.

All take and return RGB uint8 H x W x 3 with a hole mask H x W (> 0 = missing); ``ClassicalMethod``
makes each one a fill method. Each registers itself with its working size (``@classical``).
OpenCV's Telea/NS/FSR treat the three channels independently, so RGB order needs no BGR swap;
ShiftMap wants CIELab (see ``shiftmap``).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .._lazy import lazy
from ..runtime.base import FillMethod
from .registry import classical

torch = lazy("torch")

# Largest window side each classical method fills at native resolution (beyond: the pipeline's
# strategies scale down or aggregate residuals). Telea/NS cost grows with the hole only; FSR
# and the biharmonic solve grow much faster, so they get a working size like a network. ShiftMap
# grows faster still, with the picture and the hole (2 loaded cores, a square hole of 3 / 10 / 30 %:
# 0.4 / 0.9 / 3.7 s at 256 px, 1.7 / 5 / 20 s at 512 px; a 3 % hole at 1024 px: 12-18 s, where FSR
# takes 1.3-2.2 s), so it works at 512 px.


def _hole_u8(mask: np.ndarray) -> np.ndarray:
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


@classical("opencv-telea", max_side=8192)
def telea(image: np.ndarray, mask: np.ndarray, radius: int = 5) -> np.ndarray:
    return cv2.inpaint(np.ascontiguousarray(image), _hole_u8(mask), radius, cv2.INPAINT_TELEA)


@classical("opencv-ns", max_side=8192)
def navier_stokes(image: np.ndarray, mask: np.ndarray, radius: int = 5) -> np.ndarray:
    return cv2.inpaint(np.ascontiguousarray(image), _hole_u8(mask), radius, cv2.INPAINT_NS)


@classical("opencv-fsr", max_side=1024)
def fsr(image: np.ndarray, mask: np.ndarray, mode: str = "fast") -> np.ndarray:
    """OpenCV-contrib frequency selective reconstruction (strongest classical method on thin masks)."""
    algo = {"fast": cv2.xphoto.INPAINT_FSR_FAST, "best": cv2.xphoto.INPAINT_FSR_BEST}[mode]
    # A C-contiguous output buffer: OpenCV writes into a copy of any other (zeros_like of a strided
    # view is strided too), so the fill would silently stay black.
    out = np.zeros(image.shape, np.uint8)
    known = 255 - _hole_u8(mask)  # xphoto wants 255 = known pixel
    cv2.xphoto.inpaint(np.ascontiguousarray(image), known, out, algo)
    return out


@classical("opencv-shiftmap", max_side=512)
def shiftmap(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """OpenCV-contrib Shift-Map (He and Sun 2012): the hole is filled with pixels copied from offsets
    into the known picture, chosen by a graph cut (texture stays sharp, seams can show).

    OpenCV's help: for 3 channels it expects "CIELab colorspace or similar one, where first color
    component shows intensity", so the picture goes through float32 Lab (uint8 Lab moves colours by up
    to 4 levels) and back. Slow: about 0.2 s at 256 px and 1-20 s at 512 px (grows with the hole;
    its ``max_side`` gives it a working size). It can leave some hole pixels unfilled (zeros; often
    on pictures under 64 px, now and then on larger ones): L is raised by 1 so these show, and Telea
    fills them. It also rewrites a ring of about a pixel around the hole: the known pixels are put back.
    """
    hole = np.asarray(mask) > 0
    lab = cv2.cvtColor(np.asarray(image, np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lab[..., 0] += 1.0  # L in [1, 101]: a pixel left at zero was not filled
    out = np.zeros(image.shape, np.float32)  # C-contiguous, as fsr's (OpenCV writes into a copy of any other)
    cv2.xphoto.inpaint(lab, 255 - _hole_u8(hole), out, cv2.xphoto.INPAINT_SHIFTMAP)  # 255 = known pixel
    missed = hole & (out[..., 0] == 0)
    out[..., 0] -= 1.0
    rgb = np.clip(cv2.cvtColor(out, cv2.COLOR_LAB2RGB) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgb[~hole] = image[~hole]
    return telea(rgb, missed) if missed.any() else rgb


@classical("skimage-biharmonic", max_side=1024)
def biharmonic(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic  # slow import: only when used

    out = inpaint_biharmonic(image.astype(np.float64) / 255.0, np.asarray(mask) > 0, channel_axis=-1)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


@classical("fillgap-diffusion", max_side=4096)
def diffusion(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """fillgap's own multi-scale harmonic + biharmonic fill (``fillgap.models.prior``), the start the
    shipped network refines; torch, so it also runs on a GPU and inside an exported model."""
    import torch

    from ..models.prior import DiffusionPrior

    hole = torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None, None]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        out = DiffusionPrior()(x * (1 - hole), hole)
    return (out[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


@classical("mean-fill", max_side=1 << 20)
def mean_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The trivial baseline: every hole pixel becomes the mean colour of the known pixels."""
    hole = np.asarray(mask) > 0
    out = image.copy()
    if hole.all():
        out[:] = 128
    elif hole.any():
        out[hole] = np.round(image[~hole].reshape(-1, image.shape[2]).mean(axis=0)).astype(np.uint8)
    return out


class ClassicalMethod(FillMethod):
    """A classical function (above) (uint8 H x W x 3 in and out) as a method."""

    kind = "classical"

    def __init__(self, name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], max_side: int):
        self.name, self.fn, self.max_side = name, fn, max_side
        self.source = f"fillgap.methods.classical:{fn.__name__}"

    def fill_array(self, img: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """One picture, uint8 H x W x C, and its bool H x W hole: the fill as uint8 H x W x C. The
        pipeline's route without torch (``fillgap.fill.inpaint``, windows at native resolution)."""
        if hole.all():
            # nothing known to fill from: mid grey, as the networks and mean-fill give (Telea and NS
            # would return the picture unchanged, the biharmonic solve fails)
            return np.full_like(img, 128)
        if img.shape[2] == 1:  # grey pictures: the classical functions want three channels
            return self.fn(np.repeat(img, 3, axis=2), hole).mean(axis=2, keepdims=True)
        return self.fn(img, hole)

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        # The pipeline hands over uint8 pictures divided by 255, so this round trip is exact.
        imgs = image.detach().float().mul(255).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        holes = (hole[:, 0] > 0).cpu().numpy()
        outs = [self.fill_array(img, h) for img, h in zip(imgs, holes)]
        out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).float().div_(255.0)
        return out.to(image.device)
