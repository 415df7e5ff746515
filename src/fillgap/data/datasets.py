from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import FillgapError
from ..masks import MaskGenerator, make_rng
from .mnist import mnist_source
from .photos import photo_source
from .sources import BUNDLED, ArrayImages, FolderImages, ManifestImages, bundled_photos  # noqa: F401 - public here too


def make_source(spec: str, split: str = "train", max_side: int | None = 1536):
    """A source from a config string: ``bundled``, ``mnist`` (needs ``fillgap data prepare``),
    ``photos`` (the prepared photo corpus), ``pack:FILE.npz`` (``fillgap data pack``), a folder
    path, or a manifest file (one path a line)."""
    if spec.startswith("pack:"):
        from .pack import PackImages

        return PackImages(spec[len("pack:") :], split)
    if spec == "bundled":
        return bundled_photos("test" if split in ("val", "test") else "train")
    if spec == "mnist":
        return mnist_source(split)
    if spec == "photos":
        return photo_source(split)
    path = Path(spec).expanduser()
    if path.is_file():
        return ManifestImages(path, max_side=max_side)
    if not path.is_dir():
        raise FillgapError(
            f"data '{spec}' is neither 'bundled', 'mnist', 'photos', 'pack:FILE.npz', an existing "
            "folder nor a manifest file"
        )
    return FolderImages(path, max_side=max_side, preload=False)


def random_patch(
    rng: np.random.Generator, img: np.ndarray, size: int, scale: tuple[float, float] = (0.25, 1.0), augment: bool = True
) -> np.ndarray:
    """A size x size patch: a random square crop whose side is a random fraction of the short side.

    ``scale`` is the range of (crop side / short side), drawn log-uniformly: 1.0 gives the
    whole scene, small values fine texture (never upsampled beyond 1:1 when the photo is
    big enough). Then a random horizontal flip and a small brightness/contrast jitter.
    """
    h, w = img.shape[:2]
    short = min(h, w)
    lo = max(scale[0], min(1.0, size / short) if short >= size else scale[0])
    lo = min(lo, scale[1])
    side = int(round(short * math.exp(rng.uniform(math.log(lo), math.log(scale[1])))))
    side = max(1, min(side, short))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = img[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    patch = cv2.resize(crop, (size, size), interpolation=interp) if side != size else crop.copy()
    if patch.ndim == 2:
        patch = patch[..., None]
    if augment:
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        gain, bias = rng.uniform(0.9, 1.1), rng.uniform(-0.04, 0.04) * 255
        patch = np.clip(patch.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(patch)


class InpaintDataset(Dataset):
    """Samples ``{"image", "mask", "masked"}``: C x S x S float in [0, 1], 1 x S x S, C x S x S.

    ``samples_per_epoch`` lets a few photos give many patches (sample i uses photo
    i mod len(source)). Everything random is drawn from (seed, epoch, index): call
    ``set_epoch`` each epoch for fresh crops and holes. ``fixed=True`` draws the same
    crops and holes whatever the epoch (validation).
    """

    def __init__(
        self,
        source,
        size: int,
        masks: MaskGenerator,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        scale: tuple[float, float] = (0.25, 1.0),
        augment: bool = True,
        fixed: bool = False,
    ):
        self.source, self.size, self.masks, self.seed = source, size, masks, seed
        self.length = samples_per_epoch or len(source)
        self.scale, self.augment, self.fixed = scale, augment, fixed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        epoch = 0 if self.fixed else self.epoch
        img = self.source[index % len(self.source)]
        rng = make_rng(self.seed, epoch, index)
        if img.shape[0] == img.shape[1] == self.size:
            patch = img
        else:
            patch = random_patch(rng, img, self.size, self.scale, self.augment)
        # NumPy rather than torch for these small element-wise steps: torch spreads them over its
        # intra-op threads, which stall when the cores are busy (10x slower, see bench/data.py).
        image = np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
        # The mask has its own stream, so changing crop settings leaves the holes unchanged.
        mask = self.masks(self.size, self.size, epoch, index)[None].astype(np.float32, copy=False)
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(mask),
            "masked": torch.from_numpy(image * (1 - mask)),
        }
