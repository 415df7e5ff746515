"""Step 3 of a fill: run a method on one window at a working scale (the strategy).

- ``resize``: one window around all holes, scaled down to the method's ``max_side`` when
  larger, filled, scaled back up (bicubic) - fillgap's behaviour before strategies existed.
- ``crop``: one window per group of nearby holes (``plan.plan_windows``), each filled at its
  native resolution when it fits the method's limit, scaled down like ``resize`` otherwise.
- ``cra``: contextual residual aggregation (Yi et al., CVPR 2020): the window is filled at
  <= ``CRA_SIDE`` px, upsampled, and the known region's high frequencies (the picture minus
  its blurred self) are copied into the hole with hole-to-context attention weights computed
  at the low resolution (``fillgap.fill.cra.aggregate_residual``), so a large window
  gets a sharp fill for the cost of a small one.
- ``auto`` (default): per window, ``crop`` when it fits the method's limit, ``cra`` beyond.
"""

from __future__ import annotations

import numbers

from .._lazy import lazy
from ..errors import FillgapError, did_you_mean
from .tensors import area_resize, as_float
from ..methods import FillMethod
from ..runtime.threads import apply_torch_threads

torch = lazy("torch")  # a classical method's native-resolution windows skip this module's ``run``
F = lazy("torch.nn.functional")

STRATEGIES = ("auto", "resize", "crop", "cra")
CRA_SIDE = 512  # long side of the low-resolution fill in ``cra``
# Residual of the single best-matching context cell: top-4 blending averaged textures away
# (bench/hires.py, 6 cases at 2560 x 1600: detail ratio 0.67/0.46 with top-4, 0.92/0.76 with
# top-1 for blob/strokes, hole PSNR 0.1 dB apart).
CRA_TOPK = 1
MIN_MAX_SIDE = 16  # smaller working sizes leave a network nothing to see


def check_strategy(strategy) -> str:
    if strategy not in STRATEGIES:
        raise FillgapError(
            f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}{did_you_mean(strategy, STRATEGIES)}"
        )
    return strategy


def check_max_side(max_side) -> int | None:
    if max_side is None:
        return None
    if isinstance(max_side, bool) or not isinstance(max_side, numbers.Integral):
        raise FillgapError(f"max_side must be a whole number of pixels, got {max_side!r}")
    if max_side < MIN_MAX_SIDE:
        raise FillgapError(f"max_side must be at least {MIN_MAX_SIDE} pixels, got {max_side}")
    return int(max_side)


def _aggregate():
    """``aggregate_residual`` when the attention module is part of this build, else None."""
    try:
        from .cra import aggregate_residual
    except ImportError:
        return None
    return aggregate_residual


def cra_available() -> bool:
    return _aggregate() is not None


def limit_of(method: FillMethod, max_side: int | None) -> int:
    return max_side if max_side is not None else method.max_side


def native_side(method: FillMethod, strategy: str, max_side: int | None = None) -> int:
    """The longest window side ``run`` fills at the window's own resolution by the concrete
    ``strategy``, with no resampling: the method's limit for resize and crop, at most
    ``CRA_SIDE`` for cra (its low-resolution pass)."""
    limit = limit_of(method, max_side)
    return min(CRA_SIDE, limit) if strategy == "cra" else limit


def choose(strategy: str, method: FillMethod, size: tuple[int, int], max_side: int | None = None) -> str:
    """The concrete strategy (resize, crop or cra) for a window of ``size`` (H, W)."""
    if strategy != "auto":
        return strategy
    if method.fixed_size or max(size) <= limit_of(method, max_side):
        return "crop"
    return "cra" if cra_available() else "crop"


def _low_fill(method: FillMethod, image: torch.Tensor, hole: torch.Tensor, side: int) -> torch.Tensor:
    """``method``'s fill at a working size whose long side is at most ``side`` (not scaled back).
    ``image``: uint8 or [0, 1] floats; a uint8 one is scaled down without a full-resolution
    float copy (``area_resize``)."""
    h, w = image.shape[-2:]
    s = min(1.0, side / max(h, w))
    if method.fixed_size or s >= 1.0:
        return method.fill(as_float(image), hole)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    x = area_resize(image, size).clamp(0, 1)
    m = (F.interpolate(hole, size=size, mode="area") > 0).float()  # a part-hole pixel stays a hole
    return method.fill(x, m)


def _scaled_fill(method: FillMethod, image: torch.Tensor, hole: torch.Tensor, side: int) -> torch.Tensor:
    """``method`` at a working size whose long side is at most ``side``, back at the window's size."""
    out = _low_fill(method, image, hole, side)
    if out.shape[-2:] == image.shape[-2:]:
        return out
    return F.interpolate(out, size=image.shape[-2:], mode="bicubic").clamp(0, 1)


def run(
    method: FillMethod, image: torch.Tensor, hole: torch.Tensor, strategy: str, max_side: int | None = None
) -> torch.Tensor:
    """The fill of N windows of one size (N x C x H x W uint8, or floats in [0, 1]; hole
    N x 1 x H x W) by one concrete strategy (see ``choose``); returns N x 3 x H x W floats in
    [0, 1], except ``cra`` on uint8 windows larger than its working size: the fill rounded to
    uint8 and written over the hole pixels of ``image`` itself (contiguous windows; the pipeline
    hands over its own copies), so no full-resolution float copy is made. The method's ``finish``
    runs last, on the window at its own size."""
    apply_torch_threads()  # set_threads ran before torch was loaded: its count applies now
    filled = method.finish(image, hole, _strategy_fill(method, image, hole, strategy, max_side))
    return _grey_where_grey(image, hole, filled)


def _grey_where_grey(image: torch.Tensor, hole: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """A black-and-white photo gets a black-and-white fill: where a window's known pixels are grey
    (channels within 2 levels of each other at 99 % of them), the hole's channels are set to their
    mean. A network's faint tint inside a grey photo is what gave fills away to eye-test judges."""
    if image.shape[1] != 3:
        return filled
    h, w = image.shape[-2:]
    step = max(1, int((h * w / 250_000) ** 0.5))  # a sample of about 250,000 pixels says as much
    for i in range(filled.shape[0]):
        known = hole[i, 0, ::step, ::step] <= 0
        if not bool(known.any()):
            continue
        pixels = image[i, :, ::step, ::step][:, known]
        spread = pixels.amax(0) - pixels.amin(0)
        if image.dtype != torch.uint8:
            spread = spread * 255
        if float((spread > 2).float().mean()) > 0.01:
            continue
        inside = hole[i, 0] > 0
        grey = filled[i][:, inside].float().mean(0)
        filled[i][:, inside] = (grey.round() if filled.dtype == torch.uint8 else grey).to(filled.dtype)
    return filled


def _strategy_fill(
    method: FillMethod, image: torch.Tensor, hole: torch.Tensor, strategy: str, max_side: int | None
) -> torch.Tensor:
    limit = limit_of(method, max_side)
    if strategy in ("resize", "crop"):
        return _scaled_fill(method, image, hole, limit)
    if strategy != "cra":
        raise FillgapError(f"unknown strategy {strategy!r}")
    aggregate = _aggregate()
    if aggregate is None:
        raise FillgapError("strategy 'cra' needs fillgap.models.attention, which this installation lacks")
    low = native_side(method, "cra", max_side)
    coarse = _low_fill(method, image, hole, low)
    if coarse.shape[-2:] == image.shape[-2:]:
        return coarse  # filled at full resolution already: no detail to restore
    if image.dtype == torch.uint8:  # the window is the pipeline's copy: its hole is written over
        return aggregate(image, hole, coarse, topk=CRA_TOPK, inplace=True)
    return aggregate(image, hole, coarse, topk=CRA_TOPK).clamp_(0, 1)
