"""The evaluation protocol: fixed pictures, fixed seeded holes, every method through the same cases.

A protocol is a versioned JSON file in ``fillgap/eval/protocols/`` (``v2``: every photo of the
``test`` split of photos.csv, written by ``python -m fillgap.eval.make_protocol v2``; ``v1``: the first
8 of them, kept for continuity, same masks per photo; ``bundled``: the 3 held-out photos shipped
in the package, for CI and the demo). It fixes:

- the pictures and how each becomes a ``size`` x ``size`` square: short side resized to
  ``size`` (``cv2.INTER_AREA``; ``INTER_CUBIC`` when the photo is smaller), centre crop;
- the holes: for every (picture, kind, hole-ratio bucket) cell, masks are drawn from the
  seeded stream ``make_rng(mask_seed, crc32("picture|kind|bucket"), draw)`` for draw = 0, 1, ...
  until one falls in the bucket (rejection sampling). A kind's masks rarely or never reach
  some buckets (thin strokes cover 5-17 % of a picture): the protocol's ``cells`` lists, per
  kind, only the buckets that at least ``min_hit_rate`` of its masks reach at every size
  (measured by ``python -m fillgap.eval.runner``); the other cells are empty by design, so a
  bucket column averages over the kinds that can reach it (the per-kind table shows each kind).
- checksums of the prepared pictures and of the masks per size: a change in data preparation
  or in the mask generator shows up as a warning in every report (and fails the tests).

Every method comes from ``fillgap.methods``' registry and runs through ``fillgap.fill``'s
pipeline, as ``fillgap fill`` would run it: its output is composited (known pixels copied from
the original), so all methods are judged on the hole alone. Cases are run one at a
time with every method in turn, so a change in machine load touches all methods alike.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import FillgapError, did_you_mean
from ..imageio import read_image
from ..masks import generate, hole_ratio, make_rng

PROTOCOL_DIR = Path(__file__).with_name("protocols")


# -- the protocol file -------------------------------------------------------------------------
class ImageSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["photos", "bundled"]  # prepared photo corpus, or the package's bundled/ folder
    split: str  # the split of photos.csv (or bundled/) the names come from
    names: list[str]


class GridCell(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str
    kind: str
    bucket: int


class Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int
    description: str
    images: ImageSet
    preprocess: str
    sizes: list[int]
    mask_seed: int
    buckets: list[tuple[float, float]]  # hole-ratio intervals [lo, hi)
    cells: dict[str, list[int]]  # kind -> indices of the buckets it is drawn in
    min_hit_rate: float  # the rule that chose ``cells`` (see module doc)
    max_draws: int
    grid: list[GridCell]
    images_sha256: dict[str, str] = {}  # size -> checksum of the prepared pictures
    masks_sha256: dict[str, str] = {}  # size -> checksum of every case's mask


def bucket_label(bucket: tuple[float, float]) -> str:
    return f"{round(bucket[0] * 100)}-{round(bucket[1] * 100)} %"


def available_protocols() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.json"))


def load_protocol(spec: str | Path) -> Protocol:
    """A protocol by name (``v1``, ``bundled``) or from a JSON file."""
    path = Path(spec)
    if not (path.suffix == ".json" and path.exists()):
        if str(spec) not in available_protocols():
            raise FillgapError(
                f"unknown protocol '{spec}'{did_you_mean(spec, available_protocols())} "
                f"(choose from {', '.join(available_protocols())}, "
                "or give a .json file)"
            )
        path = PROTOCOL_DIR / f"{spec}.json"
    try:
        protocol = Protocol(**json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise FillgapError(f"bad protocol file {path}: {str(exc).splitlines()[0]}") from None
    for kind, idx in protocol.cells.items():
        if any(not 0 <= i < len(protocol.buckets) for i in idx):
            raise FillgapError(f"bad protocol file {path}: kind '{kind}' names a bucket that does not exist")
    return protocol


# -- pictures ----------------------------------------------------------------------------------
def square(image: np.ndarray, size: int) -> np.ndarray:
    """Short side resized to ``size``, then the centre ``size`` x ``size`` square."""
    h, w = image.shape[:2]
    s = size / min(h, w)
    nh, nw = (size, max(size, round(w * s))) if h <= w else (max(size, round(h * s)), size)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else image
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def image_paths(protocol: Protocol) -> dict[str, Path]:
    spec = protocol.images
    if spec.source == "bundled":
        from ..data.datasets import BUNDLED

        folder = BUNDLED / spec.split
        found = {p.stem: p for p in sorted(folder.iterdir())} if folder.is_dir() else {}
        paths = {n: found.get(n, folder / f"{n}.jpg") for n in spec.names}
        hint = "the package's bundled photos are incomplete: reinstall fillgap"
    else:
        from ..data.photos import data_root

        folder = data_root() / "photos"
        paths = {n: folder / f"{n}.png" for n in spec.names}
        hint = "run `fillgap data prepare --sets photos` first, or use --protocol bundled"
    missing = [p for p in paths.values() if not p.exists()]
    if missing:
        raise FillgapError(
            f"protocol {protocol.name}: {len(missing)} of its {len(paths)} pictures are missing "
            f"(e.g. {missing[0]}): {hint}"
        )
    return paths


def load_images(protocol: Protocol, size: int) -> dict[str, np.ndarray]:
    return {name: square(read_image(path), size) for name, path in image_paths(protocol).items()}


# -- holes -------------------------------------------------------------------------------------
@dataclass
class Case:
    image: str
    kind: str
    bucket: int  # index into protocol.buckets
    mask: np.ndarray  # float32 H x W, 1 = hole
    draw: int  # how many draws the rejection sampling took before this one

    @property
    def key(self) -> str:
        return f"{self.image}|{self.kind}|{self.bucket}"


def draw_mask(protocol: Protocol, image: str, kind: str, bucket: int, size: int) -> tuple[np.ndarray, int]:
    """The first mask of the cell's seeded stream whose hole ratio falls in the bucket."""
    lo, hi = protocol.buckets[bucket]
    stream = zlib.crc32(f"{image}|{kind}|{bucket}".encode())  # stable across runs and machines
    for draw in range(protocol.max_draws):
        mask = generate(kind, make_rng(protocol.mask_seed, stream, draw), size, size)
        if lo <= hole_ratio(mask) < hi and mask.any():
            return mask, draw
    raise FillgapError(
        f"protocol {protocol.name}: no {kind} mask with a {bucket_label((lo, hi))} hole after "
        f"{protocol.max_draws} draws ({image}, {size} px): the mask generator changed, "
        "the protocol needs a new version"
    )


def make_cases(protocol: Protocol, size: int, names: list[str] | None = None) -> list[Case]:
    """Every (picture, kind, bucket) case of the protocol, in the protocol's order."""
    cases = []
    for image in names or protocol.images.names:
        for kind, buckets in protocol.cells.items():
            for b in buckets:
                mask, draw = draw_mask(protocol, image, kind, b, size)
                cases.append(Case(image, kind, b, mask, draw))
    return cases


def masks_checksum(cases: list[Case]) -> str:
    digest = hashlib.sha256()
    for case in cases:
        digest.update(case.key.encode())
        digest.update(np.packbits(case.mask > 0).tobytes())
    return digest.hexdigest()


def images_checksum(images: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(images):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(images[name]).tobytes())
    return digest.hexdigest()


def bucket_hit_rates(
    kinds: tuple[str, ...] = ("thin", "medium", "thick", "box"),
    buckets: list[tuple[float, float]] | None = None,
    size: int = 256,
    draws: int = 2000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Fraction of each kind's masks that land in each bucket: the measurement behind ``cells``."""
    buckets = buckets or [(0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5)]
    rates = {}
    for kind in kinds:
        ratios = np.array([hole_ratio(generate(kind, make_rng(seed, 0, i), size, size)) for i in range(draws)])
        rates[kind] = [float(((ratios >= lo) & (ratios < hi) & (ratios > 0)).mean()) for lo, hi in buckets]
    return rates
