"""Training and evaluation data: image sources and the (image, mask, masked) sample dataset.

A *source* is anything with ``len()`` and ``[i] -> uint8 H x W x C`` (C = 3, or 1 for digits):
``FolderImages`` (any image folder), ``ArrayImages`` (MNIST, prepared photo caches),
``bundled_photos()`` (the small set shipped in the package). ``InpaintDataset`` turns a
source into training samples: random multi-scale crops, flips, and a fresh mask per
(seed, epoch, index).
"""

from .datasets import ArrayImages, FolderImages, InpaintDataset, bundled_photos, make_source, random_patch
from .mnist import read_idx

__all__ = ["ArrayImages", "FolderImages", "InpaintDataset", "bundled_photos", "make_source", "random_patch", "read_idx"]
