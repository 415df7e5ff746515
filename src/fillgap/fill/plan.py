"""Step 2 of a fill: which windows of the picture to fill, one per group of nearby holes (and, for
thin holes in a window too large to fill at native resolution, native-resolution tiles along them)."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

MARGIN_FRAC = 0.5  # context around a hole: half its size on each side ...
MIN_MARGIN = 32  # ... and at least this many pixels
POOL = 4  # grouping works on the hole max-pooled by this factor
MAX_GROUPS = 400  # more separate holes than this: one window around all
MERGE_GAP = 16  # windows closer than this become one (two calls would share most context)
# Thin holes (scratches, wires, lines of text): every hole pixel within this many pixels of a kept one.
# Filled at a working scale their width shrinks below a pixel; measured at 2560 x 1600 on three test
# photos, native-resolution tiles beat cra by 2.5-6.4 dB hole PSNR on 3-16 px lines (bench/hires.py's
# scratches: +5.0 dB); from 64 px lines (half-width above 40) cra and a scaled fill are within 1 dB.
THIN_HALF_WIDTH = 40
TILE_CELL = 320  # side of the cells a thin hole is cut into; each is filled with its own context ...
MIN_TILE_CELL = 128  # ... and no smaller (a tiny --max-side would make thousands of tiles: cra then)


class Window(NamedTuple):
    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def _grow(
    top: int,
    bottom: int,
    left: int,
    right: int,
    shape: tuple[int, int],
    margin_frac: float = MARGIN_FRAC,
    min_margin: int = MIN_MARGIN,
) -> Window:
    mh = max(min_margin, int((bottom - top) * margin_frac))
    mw = max(min_margin, int((right - left) * margin_frac))
    h, w = shape
    return Window(max(0, top - mh), min(h, bottom + mh), max(0, left - mw), min(w, right + mw))


def hole_window(hole: np.ndarray, margin_frac: float = MARGIN_FRAC, min_margin: int = MIN_MARGIN) -> Window:
    """The bounding box of every hole pixel grown by a context margin (one window for all)."""
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    return _grow(rows[0], rows[-1] + 1, cols[0], cols[-1] + 1, hole.shape, margin_frac, min_margin)


def _close(a: Window, b: Window, gap: int) -> bool:
    return a.top < b.bottom + gap and b.top < a.bottom + gap and a.left < b.right + gap and b.left < a.right + gap


def _union(a: Window, b: Window) -> Window:
    return Window(min(a.top, b.top), max(a.bottom, b.bottom), min(a.left, b.left), max(a.right, b.right))


def _max_pool(hole: np.ndarray) -> np.ndarray:
    """The bool hole max-pooled by ``POOL`` (a partly covered block is hole), zero-padded to a multiple."""
    h, w = hole.shape
    ph, pw = (-h) % POOL, (-w) % POOL
    padded = np.pad(hole, ((0, ph), (0, pw))) if ph or pw else hole
    return padded.reshape((h + ph) // POOL, POOL, (w + pw) // POOL, POOL).any(axis=(1, 3))


def plan_windows(hole: np.ndarray, merge_gap: int = MERGE_GAP, single: bool = False) -> list[Window]:
    """Disjoint windows covering every hole pixel: one per connected group of holes, each grown by
    its context margin, merged while any two are within ``merge_gap`` pixels. ``single``: one
    window around all holes (the ``resize`` strategy). Sorted top to bottom, left to right."""
    hole = np.asarray(hole) > 0
    if not hole.any():
        return []
    if single:
        return [hole_window(hole)]
    # Groups found on a 4x max-pooled hole (a 12 MP picture's label image would be 48 MB), then
    # each group's exact bounding box from the full-resolution hole inside its coarse box.
    pooled = _max_pool(hole)
    n, _, stats, _ = cv2.connectedComponentsWithStats(pooled.astype(np.uint8), connectivity=8)
    if n - 1 > MAX_GROUPS:  # speckle: merging thousands of windows costs more than it saves
        return [hole_window(hole)]
    windows = []
    for x, y, ww, hh, _ in stats[1:n]:
        top, left = y * POOL, x * POOL
        sub = hole[top : (y + hh) * POOL, left : (x + ww) * POOL]
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        windows.append(
            _grow(
                int(top + rows[0]), int(top + rows[-1] + 1), int(left + cols[0]), int(left + cols[-1] + 1), hole.shape
            )
        )
    # Merge until stable; a sweep over windows sorted by top keeps this fast for many holes.
    merged = True
    while merged and len(windows) > 1:
        merged = False
        windows.sort()
        out: list[Window] = []
        for win in windows:
            for i, other in enumerate(out):
                if _close(win, other, merge_gap):
                    out[i] = _union(win, other)
                    merged = True
                    break
            else:
                out.append(win)
        windows = out
    return sorted(windows)


def hole_half_width(hole: np.ndarray) -> float:
    """The largest distance from a hole pixel to the nearest kept pixel (half the hole's width), in
    pixels, measured on the hole max-pooled by ``POOL`` (a 12 MP window's distance map would be 48 MB;
    pooling widens the hole, so this errs by at most ``POOL`` pixels on the thick side)."""
    pooled = _max_pool(hole)
    # a 1-pixel kept frame: the picture's border is not a kept pixel, but a hole touching it is
    # still thin by its other side (the frame only keeps the transform finite when all is hole)
    framed = np.pad(pooled, 1).astype(np.uint8)
    return float(cv2.distanceTransform(framed, cv2.DIST_L2, 3).max()) * POOL


def _around(part: Window, side: int, shape: tuple[int, int]) -> Window:
    """The ``side`` x ``side`` window centred on ``part``, shifted to lie inside the picture (as
    large as the picture where it is smaller)."""
    h, w = shape
    sh, sw = min(side, h), min(side, w)
    top = min(max(0, (part.top + part.bottom - sh) // 2), h - sh)
    left = min(max(0, (part.left + part.right - sw) // 2), w - sw)
    return Window(top, top + sh, left, left + sw)


def thin_tiles(hole: np.ndarray, window: Window, limit: int) -> list[tuple[Window, Window]] | None:
    """Cut ``window``'s hole into native-resolution pieces when it is thin (``THIN_HALF_WIDTH``; the
    picture's edge counts as kept, so a band along it up to twice that wide is thin too): (context
    window, written part) pairs. The written parts are disjoint and cover every hole pixel of
    ``window``; the context windows all have one size (cell + 2 margins, at most ``limit``: one
    network shape, so one set of its caches, and the folder engine batches them), each centred on its part and shifted
    inside the picture; the whole hole inside one stays a hole. None when the hole is not thin or
    the cells would be smaller than ``MIN_TILE_CELL``."""
    sub = hole[window.slices]
    half = hole_half_width(sub)
    if half > THIN_HALF_WIDTH:
        return None
    margin = max(MIN_MARGIN, int(2 * half))
    cell = min(TILE_CELL, limit - 2 * margin)
    if cell < MIN_TILE_CELL:
        return None
    pieces = []
    for top in range(window.top, window.bottom, cell):
        for left in range(window.left, window.right, cell):
            part = hole[top : min(top + cell, window.bottom), left : min(left + cell, window.right)]
            rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
            if not len(rows):
                continue
            write = Window(top + int(rows[0]), top + int(rows[-1]) + 1, left + int(cols[0]), left + int(cols[-1]) + 1)
            pieces.append((_around(write, cell + 2 * margin, hole.shape), write))
    return pieces
