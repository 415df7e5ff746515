"""Filling holes in pictures of any size: the one pipeline every entry point uses.

``inpaint(image, mask, model)``: image uint8 H x W x 3, mask H x W (float in [0, 1] or uint8
0-255; > 0 = hole), returns uint8 H x W x 3. The API, ``fillgap fill`` (one file or a folder),
the server and ``fillgap eval`` all go through these steps:

1. ``prepare_mask`` (mask.py): normalise, resize a mask of another size without losing thin
   strokes, dilate, apply the blend mode (``hard``: every pixel > 0 is replaced; ``soft``:
   grey = weight of the fill).
2. ``plan_windows`` (plan.py): one window per group of nearby holes, grown by context (half
   the hole's size, at least 32 px); ``resize`` uses a single window around all holes. Under
   ``auto``, a thin hole (scratches, wires, text) in a window too large for the method is cut
   into native-resolution tiles along it (``thin_tiles``) instead of a scaled-down fill.
3. ``run`` (strategies.py): the method (``fillgap.methods``) on each window at a working
   scale: ``resize``, ``crop``, ``cra`` or ``auto``. A classical method's window filled at its
   own resolution skips the tensors: ``fill_array`` on the numpy window, the same bytes without
   loading torch.
4. ``composite`` (composite.py): ``out = a * fill + (1 - a) * input`` inside the hole; pixels
   with ``a = 0`` are copied, so they are bit-identical to the input. Every method saw the
   whole area with ``a > 0`` as missing, so nothing of the removed object leaks into a soft edge.

An empty mask gives the input back with no method loaded or run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..cancel import checkpoint
from ..errors import FillgapError
from .tensors import mask_to_tensor, to_tensor
from ..methods import DEFAULT_RUNTIME, FillMethod, get_method
from .composite import composite
from .mask import BLENDS, as_mask, check_blend, check_dilate, prepare_mask, resize_mask
from .plan import Window, hole_window, plan_windows, thin_tiles
from .strategies import (
    CRA_SIDE,
    STRATEGIES,
    check_max_side,
    check_strategy,
    choose,
    cra_available,
    limit_of,
    native_side,
    run,
)

if TYPE_CHECKING:
    import torch


@dataclass
class WindowJob:
    """One window of a picture to fill: where, by which concrete strategy, and its tensors."""

    window: Window
    strategy: str
    # 1 x 3 x h x w uint8, the pipeline's own copy: strategies read it as floats when they need
    # them (``cra`` writes its fill into it)
    image: torch.Tensor
    hole: torch.Tensor  # 1 x 1 x h x w, 1 = hole
    # the part of ``window`` whose hole pixels this job's fill is written to (None: all of it);
    # a tile of a thin hole sees a margin of context that other tiles write
    write: Window | None = None

    @property
    def key(self) -> tuple:
        """Jobs with the same key may be filled in one batched ``run`` call."""
        return (self.strategy, *self.image.shape[-2:])


def check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise FillgapError(f"image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    return image


def _pieces(
    hole: np.ndarray,
    method: FillMethod,
    strategy: str,
    max_side: int | None,
) -> Iterator[tuple[Window, str, Window | None]]:
    """(window, concrete strategy, part written) for every window of ``hole`` to fill."""
    for win in plan_windows(hole, single=strategy == "resize"):
        concrete = choose(strategy, method, (win.height, win.width), max_side)
        pieces = [(win, None)]
        if strategy == "auto" and concrete == "cra":
            tiles = thin_tiles(hole, win, limit_of(method, max_side))
            if tiles:
                pieces, concrete = tiles, "crop"
        for window, write in pieces:
            yield window, concrete, write


def _job(image: np.ndarray, hole: np.ndarray, window: Window, strategy: str, write: Window | None) -> WindowJob:
    # uint8 until ``run`` needs floats: a 12 MP picture's window in float is 4x the memory,
    # and ``cra`` needs it only after its low-resolution pass
    return WindowJob(
        window,
        strategy,
        to_tensor(image[window.slices], uint8=True),
        mask_to_tensor(hole[window.slices].astype(np.float32)),
        write,
    )


def check_fits(image: np.ndarray, method: FillMethod) -> None:
    """Refuse a colour picture for a greyscale network (one channel, e.g. seed-mnist-ae's 28 x 28
    digits): it would fill a grey copy of the hole's window, scaled to its size."""
    if getattr(method, "channels", 3) == 1 and not (
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    ):
        size = f" at {method.fixed_size}x{method.fixed_size}" if method.fixed_size else ""
        raise FillgapError(
            f"model '{method.name}' fills greyscale pictures only (one channel{size}); this picture is in colour"
        )


def plan(
    image: np.ndarray, alpha: np.ndarray, method: FillMethod, strategy: str = "auto", max_side: int | None = None
) -> Iterator[WindowJob]:
    """The windows of ``image`` to fill for the prepared weights ``alpha``, with their tensors, one
    at a time (a thin hole's tiles would hold all their tensors at once in a list)."""
    check_fits(image, method)
    hole = alpha if alpha.dtype == bool else alpha > 0
    for window, concrete, write in _pieces(hole, method, strategy, max_side):
        yield _job(image, hole, window, concrete, write)


def array_route(method: FillMethod, window: Window, strategy: str, max_side: int | None = None) -> bool:
    """Whether ``method`` fills ``window`` by the concrete ``strategy`` on numpy arrays: a classical
    method (``fill_array``) at the window's own resolution, where ``run`` would only round-trip
    its tensors. Scaled windows (area and bicubic resampling, cra's attention) stay torch's, so
    the output is the same bytes either way (tests/test_lazy_import.py compares them)."""
    return (
        getattr(method, "fill_array", None) is not None
        and not method.fixed_size
        and max(window.height, window.width) <= native_side(method, strategy, max_side)
    )


def inpaint(
    image: np.ndarray,
    mask: np.ndarray,
    model: FillMethod | str | None = None,
    dilate: int = 0,
    max_side: int | None = None,
    *,
    strategy: str = "auto",
    blend: str = "hard",
    resize_mask: bool = False,
    runtime: str = DEFAULT_RUNTIME,
) -> np.ndarray:
    """Fill the holes of ``image`` (uint8 H x W x 3) marked by ``mask``; see the module doc.

    ``model``: a method name (``fillgap models``), a checkpoint path, a loaded network or method,
    or None for the shipped default. ``dilate``: grow the hole by this many pixels first.
    ``max_side``: the longest window side filled at native resolution (default: the method's).
    ``strategy``: auto | resize | crop | cra. ``blend``: hard | soft. ``resize_mask``: scale a
    mask of another size to the picture.
    """
    image = check_image(image)
    strategy, max_side = check_strategy(strategy), check_max_side(max_side)
    alpha = prepare_mask(mask, image.shape[:2], dilate, blend, resize_mask)
    if not (alpha if alpha.dtype == bool else alpha > 0).any():
        return image.copy()
    method = get_method(model, runtime)
    check_fits(image, method)
    hole = alpha if alpha.dtype == bool else alpha > 0
    out = None
    # One window at a time, a thin hole's tiles too: batching 4 tiles raised a 12 MP fill's peak
    # from 498 to 796 MB for no gain in time.
    for window, concrete, write in _pieces(hole, method, strategy, max_side):
        checkpoint()  # a caller that gave up (fillgap.cancel) stops it here, between windows
        if array_route(method, window, concrete, max_side):
            # a copy, as the tensor route hands over: the method never sees the caller's array
            fill = method.fill_array(np.array(image[window.slices]), hole[window.slices])
        else:
            job = _job(image, hole, window, concrete, write)
            fill = run(method, job.image, job.hole, job.strategy, max_side)
        if out is None:  # made after the first fill: a big picture's copy is not held through it
            out = image.copy()
        composite(out, image, alpha, window, fill, write)
    return out


__all__ = [
    "inpaint",
    "prepare_mask",
    "plan",
    "plan_windows",
    "run",
    "composite",
    "choose",
    "WindowJob",
    "Window",
    "as_mask",
    "resize_mask",
    "hole_window",
    "check_image",
    "check_fits",
    "check_dilate",
    "check_blend",
    "check_strategy",
    "check_max_side",
    "cra_available",
    "thin_tiles",
    "array_route",
    "native_side",
    "STRATEGIES",
    "BLENDS",
    "CRA_SIDE",
]
