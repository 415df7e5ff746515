"""Read files out of a Qt binary resource bundle (``.rcc``), as GCompris ships its pictures.

Format (qtbase, src/corelib/io/qresource.cpp): "qres", version, offsets of the tree, data and
names; tree nodes of 14 bytes (version 1) or 22 (version >= 2: plus a modification time);
names as a 16-bit length, a 32-bit hash and UTF-16BE text; data as a 32-bit size then the bytes,
zlib-compressed behind a 4-byte length when the node's flag 1 is set (flag 4, zstd, is refused).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from ..errors import FillgapError

_COMPRESSED, _DIRECTORY, _ZSTD = 1, 2, 4


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """Every file in the bundle: ``{"/dir/name.ext": bytes}``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FillgapError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return _files(data)
    except (struct.error, zlib.error, UnicodeDecodeError, IndexError, RecursionError) as exc:
        raise FillgapError(f"{path}: not a readable Qt resource bundle ({type(exc).__name__})") from None


def _files(data: bytes) -> dict[str, bytes]:
    if data[:4] != b"qres":
        raise FillgapError("no 'qres' header")
    version, tree, blobs, names = struct.unpack(">IIII", data[4:20])
    node = 22 if version >= 2 else 14
    out: dict[str, bytes] = {}

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise RecursionError
        at = tree + index * node
        name_offset, flags = struct.unpack(">IH", data[at : at + 6])
        here = prefix + (name(name_offset) if index else "")
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", data[at + 6 : at + 14])
            for child in range(first, first + count):
                walk(child, here + "/" if index else "/", depth + 1)
            return
        (offset,) = struct.unpack(">I", data[at + 10 : at + 14])
        (size,) = struct.unpack(">I", data[blobs + offset : blobs + offset + 4])
        raw = data[blobs + offset + 4 : blobs + offset + 4 + size]
        if flags & _ZSTD:
            raise FillgapError(f"{here}: zstd-compressed (not supported)")
        out[here] = zlib.decompress(raw[4:]) if flags & _COMPRESSED else raw

    walk(0, "", 0)
    return out
