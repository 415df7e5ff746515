"""Perceptual hashes for finding the same photo twice (resized, recompressed, slightly edited).

``phash`` is the DCT hash: grey, 32 x 32 (INTER_AREA), 2-D DCT, the 8 x 8 lowest frequencies
thresholded at their median, as 16 hex digits. Two photos whose hashes differ in at most
``NEAR`` of the 64 bits are treated as the same picture (photos.csv's splits must not share one).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

NEAR = 10  # bits out of 64; resized/recompressed copies differ by 0-4, unrelated photos by ~32


def phash(img: np.ndarray) -> str:
    """The 64-bit DCT hash of an H x W (x C) uint8 picture (RGB or grey), as 16 hex digits."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] >= 3:
        grey = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    else:
        grey = img.reshape(img.shape[0], img.shape[1])
    small = cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def near_duplicates(
    items: Sequence[tuple[str, str]], threshold: int = NEAR, groups: Iterable[str] | None = None
) -> list[tuple[str, str, int]]:
    """Pairs (name_a, name_b, distance) of items (name, hash) at most ``threshold`` bits apart.

    With ``groups`` (one label per item, e.g. the split) only pairs from different groups count.
    """
    labels = list(groups) if groups is not None else [None] * len(items)
    if len(labels) != len(items):
        raise ValueError("one group label per item")
    values = np.array([int(h, 16) for _, h in items], dtype=np.uint64)
    found = []
    for i in range(len(items)):
        xor = values[i + 1 :] ^ values[i]
        dist = np.unpackbits(xor.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1) if len(xor) else xor
        for k in np.flatnonzero(dist <= threshold):
            j = i + 1 + int(k)
            if groups is None or labels[i] != labels[j]:
                found.append((items[i][0], items[j][0], int(dist[k])))
    return found
