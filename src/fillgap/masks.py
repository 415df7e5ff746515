"""Seeded hole generators. Every mask is float32 H x W in [0, 1], 1 = missing.

A mask is a pure function of (seed, epoch, index): the same triple gives the same hole,
a new epoch gives a new hole, so a network never sees the same hole twice.

Presets (sizes scale with min(H, W) / 256; typical hole ratio measured by
``python -m fillgap.masks`` over 2,000 masks at 256x256, 5th-95th percentile):

=========  ==========================================  ==================
kind       what                                         typical hole ratio
=========  ==========================================  ==================
thin       4-10 strokes, 3-9 px wide                    5-17 % (median 10)
medium     3-7 strokes, 10-22 px wide                   9-27 % (median 17)
thick      2-5 strokes, 30-56 px wide                   16-56 % (median 36)
box        1-3 rectangles, each 5-30 % of the area      9-50 % (median 29)
mixture    one of the above, equally likely             7-49 % (median 20)
=========  ==========================================  ==================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("thin", "medium", "thick", "box", "mixture")


@dataclass(frozen=True)
class StrokePreset:
    strokes: tuple[int, int]  # number of strokes (inclusive range)
    vertices: tuple[int, int]  # segments per stroke
    width: tuple[float, float]  # brush width in pixels at 256 px
    length: tuple[float, float]  # segment length in pixels at 256 px


STROKE_PRESETS = {
    "thin": StrokePreset(strokes=(4, 10), vertices=(4, 10), width=(3, 9), length=(10, 40)),
    "medium": StrokePreset(strokes=(3, 7), vertices=(3, 8), width=(10, 22), length=(15, 50)),
    "thick": StrokePreset(strokes=(2, 5), vertices=(3, 7), width=(30, 56), length=(25, 80)),
}


def make_rng(seed: int, epoch: int = 0, index: int = 0) -> np.random.Generator:
    """The random stream of one sample: independent streams for every (seed, epoch, index)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def stroke_mask(rng: np.random.Generator, height: int, width: int, preset: str = "medium") -> np.ndarray:
    """Free-form brush strokes: random walks of thick segments with round joints (LaMa/DeepFill style)."""
    p = STROKE_PRESETS[preset]
    scale = min(height, width) / 256.0
    canvas = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(p.strokes[0], p.strokes[1] + 1)):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.uniform(0, 2 * math.pi)
        brush = max(1, int(round(rng.uniform(*p.width) * scale)))
        for _ in range(rng.integers(p.vertices[0], p.vertices[1] + 1)):
            angle += rng.uniform(-math.pi / 2, math.pi / 2)  # a wandering, not a zig-zag, walk
            step = rng.uniform(*p.length) * scale
            nx = float(np.clip(x + step * math.cos(angle), 0, width - 1))
            ny = float(np.clip(y + step * math.sin(angle), 0, height - 1))
            cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 255, brush, lineType=cv2.LINE_8)
            cv2.circle(canvas, (int(nx), int(ny)), brush // 2, 255, -1)  # round joint
            x, y = nx, ny
    return (canvas > 0).astype(np.float32)


def box_mask(
    rng: np.random.Generator,
    height: int,
    width: int,
    count: tuple[int, int] = (1, 3),
    area: tuple[float, float] = (0.05, 0.30),
) -> np.ndarray:
    """1-3 axis-aligned rectangles, each covering ``area`` of the picture, aspect 0.3-3.3."""
    mask = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(count[0], count[1] + 1)):
        a = rng.uniform(*area) * height * width
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        bh = int(min(height, max(1, round(math.sqrt(a / aspect)))))
        bw = int(min(width, max(1, round(math.sqrt(a * aspect)))))
        top = int(rng.integers(0, height - bh + 1))
        left = int(rng.integers(0, width - bw + 1))
        mask[top : top + bh, left : left + bw] = 1.0
    return mask


def generate(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One mask of the given kind drawn from ``rng``."""
    if kind == "mixture":
        kind = ("thin", "medium", "thick", "box")[int(rng.integers(0, 4))]
    if kind == "box":
        return box_mask(rng, height, width)
    if kind in STROKE_PRESETS:
        return stroke_mask(rng, height, width, kind)
    raise ValueError(f"unknown mask kind '{kind}' (choose from {', '.join(KINDS)})")


class MaskGenerator:
    """Fresh masks per (epoch, index), reproducible from the seed.

    >>> gen = MaskGenerator("thin", seed=0)
    >>> m = gen(256, 256, epoch=3, index=17)
    """

    def __init__(self, kind: str = "mixture", seed: int = 0):
        if kind not in KINDS:
            raise ValueError(f"unknown mask kind '{kind}' (choose from {', '.join(KINDS)})")
        self.kind, self.seed = kind, seed

    def __call__(self, height: int, width: int, epoch: int = 0, index: int = 0) -> np.ndarray:
        return generate(self.kind, make_rng(self.seed, epoch, index), height, width)


def hole_ratio(mask: np.ndarray) -> float:
    """Fraction of pixels that are (at least partly) missing."""
    return float((np.asarray(mask) > 0).mean())


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the hole by ``pixels`` (round brush), for masks that hug the object too tightly.

    Grey levels are kept: a grey-scale dilation takes the largest level around each pixel.
    """
    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(np.asarray(mask, np.float32), kernel)


def _table(samples: int = 2000, size: int = 256) -> str:
    rows = []
    for kind in KINDS:
        gen = MaskGenerator(kind, seed=0)
        ratios = np.array([hole_ratio(gen(size, size, 0, i)) for i in range(samples)])
        lo, med, hi = np.percentile(ratios, [5, 50, 95]) * 100
        rows.append(f"{kind:8s} p5 {lo:5.1f} %  median {med:5.1f} %  p95 {hi:5.1f} %")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table())
