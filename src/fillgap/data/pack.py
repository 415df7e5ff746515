"""``fillgap data pack``: the prepared photos of some splits in one ``.npz`` file, for a bare machine.

A GPU machine without the registries (or the time to run ``prepare``) trains from this one file:
``fillgap train --data pack:/path/train-pack.npz``. Everything in it is a plain NumPy array (no
pickles): ``names``, ``splits``, ``shapes`` (N x 3), ``offsets`` (N + 1) into ``data``, a uint8
array holding either the raw pixels of every photo one after the other (``codec`` raw, stored
deflated) or each photo's JPEG file (``codec`` jpeg: about 8x smaller, for upload limits),
``sha256`` per photo (of its decoded pixels) and ``list_sha256`` over the whole list.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from ..errors import FillgapError
from ..imageio import read_image
from .sources import ArrayImages
from .photos import SPLITS, data_root, photo_list
from .prepare import downscale

FORMAT = 1
CODECS = ("raw", "jpeg")


def _digest(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


def list_digest(names: Sequence[str], splits: Sequence[str], shapes: np.ndarray, digests: Sequence[str]) -> str:
    """One sha256 over the pack's list: a line ``name,split,HxWxC,sha256`` per photo."""
    lines = [f"{n},{s},{'x'.join(map(str, sh))},{d}" for n, s, sh, d in zip(names, splits, shapes.tolist(), digests)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def write_pack(
    out: str | Path,
    root: str | Path | None = None,
    splits: Iterable[str] = ("train", "val"),
    max_side: int = 1024,
    codec: str = "raw",
    quality: int = 95,
    overwrite: bool = False,
    rows: list[dict[str, str]] | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Pack the prepared photos of ``splits`` (long side <= ``max_side``) into ``out``; returns a summary."""
    out, splits = Path(out).expanduser(), list(dict.fromkeys(splits))
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise FillgapError(f"unknown split '{','.join(bad)}' (choose from {', '.join(SPLITS)})")
    if codec not in CODECS:
        raise FillgapError(f"unknown codec '{codec}' (choose {' or '.join(CODECS)})")
    if not 32 <= max_side <= 4096:
        raise FillgapError(f"--max-side {max_side}: choose 32 to 4096")
    if out.suffix != ".npz":
        raise FillgapError(f"{out}: a pack is an .npz file")
    if out.exists() and not overwrite:
        raise FillgapError(f"{out} exists (use --overwrite to replace it)")
    folder = (Path(root).expanduser() if root else data_root()) / "photos"
    chosen = [r for r in (rows if rows is not None else photo_list()) if r["split"] in splits]
    missing = [r["name"] for r in chosen if not (folder / f"{r['name']}.png").is_file()]
    if missing:
        raise FillgapError(
            f"{len(missing)} prepared photos missing in {folder} (e.g. {missing[0]}.png): "
            f"run `fillgap data prepare --sets photos` first"
        )
    if not chosen:
        raise FillgapError(f"no photos in split {', '.join(splits)}")
    blobs, shapes, digests = [], [], []
    for r in chosen:
        img = downscale(read_image(folder / f"{r['name']}.png"), max_side)
        if codec == "jpeg":
            ok, enc = cv2.imencode(
                ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
            )
            if not ok:
                raise FillgapError(f"{r['name']}: JPEG encoding failed")
            img = _decode_jpeg(enc.tobytes(), r["name"])  # the digest is of what a reader gets back
            blobs.append(enc.ravel())
        else:
            blobs.append(img.ravel())
        shapes.append(img.shape)
        digests.append(_digest(img))
    names, split_of = [r["name"] for r in chosen], [r["split"] for r in chosen]
    shapes_arr = np.array(shapes, dtype=np.int32)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([b.size for b in blobs])
    arrays = dict(
        format=np.array(FORMAT),
        codec=np.array(codec),
        max_side=np.array(max_side),
        names=np.array(names),
        splits=np.array(split_of),
        shapes=shapes_arr,
        offsets=offsets,
        data=np.concatenate(blobs),
        sha256=np.array(digests),
        list_sha256=np.array(list_digest(names, split_of, shapes_arr, digests)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fillgap-", suffix=".npz", dir=out.parent)
    os.close(fd)
    try:
        # JPEG bytes do not deflate; raw pixels shrink by about a quarter.
        (np.savez_compressed if codec == "raw" else np.savez)(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise FillgapError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    summary = {
        "out": str(out),
        "photos": len(names),
        "bytes": out.stat().st_size,
        "codec": codec,
        "max_side": max_side,
        "splits": {s: split_of.count(s) for s in splits},
        "list_sha256": str(arrays["list_sha256"]),
    }
    echo(
        f"{out}: {len(names)} photos ({', '.join(f'{s} {n}' for s, n in summary['splits'].items())}), "
        f"long side <= {max_side}, {codec}, {summary['bytes'] / 1e6:.1f} MB, list sha256 {summary['list_sha256'][:16]}"
    )
    return summary


def _decode_jpeg(data: bytes, name: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FillgapError(f"{name}: unreadable JPEG in the pack")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class PackImages(ArrayImages):
    """The photos of one split of a pack, decoded into memory once (an image source for training)."""

    def __init__(self, path: str | Path, split: str = "train"):
        path = Path(path).expanduser()
        if not path.is_file():
            raise FillgapError(f"pack {path} not found (make one with `fillgap data pack --out {path.name}`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != FORMAT:
                    raise FillgapError(f"pack {path}: format {int(z['format'])}, this fillgap reads {FORMAT}")
                codec, names, splits = str(z["codec"]), [str(n) for n in z["names"]], [str(s) for s in z["splits"]]
                shapes, offsets, digests = z["shapes"], z["offsets"], [str(d) for d in z["sha256"]]
                if list_digest(names, splits, shapes, digests) != str(z["list_sha256"]):
                    raise FillgapError(f"pack {path}: its list does not match its list_sha256 (edited or corrupt)")
                keep = [i for i, s in enumerate(splits) if s == split]
                if not keep:
                    held = ", ".join(sorted(set(splits)))
                    raise FillgapError(f"pack {path} has no '{split}' photos (it holds {held})")
                data = z["data"]
        except FillgapError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise FillgapError(f"pack {path}: unreadable ({type(exc).__name__}: {exc})") from None
        images = []
        for i in keep:
            blob = data[offsets[i] : offsets[i + 1]]
            if codec == "jpeg":
                img = _decode_jpeg(blob.tobytes(), names[i])
            else:
                img = blob.reshape(tuple(int(v) for v in shapes[i]))
            if img.shape != tuple(int(v) for v in shapes[i]) or _digest(img) != digests[i]:
                raise FillgapError(f"pack {path}: photo {names[i]} does not match its sha256 (corrupt)")
            images.append(img)
        super().__init__(images, [names[i] for i in keep])
        self.path, self.split, self.codec = path, split, codec
