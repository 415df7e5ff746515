"""Contextual residual aggregation (Yi et al., CVPR 2020): a window filled at low resolution gets
its full-resolution detail back from the known region, matched by contextual attention
(``fillgap.models.attention``) on the low-resolution fill."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.attention import _known_keys, _match
from .tensors import area_resize, as_float, round_to_uint8_

__all__ = ["aggregate_residual"]


def _cell_pixels(cells: torch.Tensor, gw: int, s: int, big_h: int, big_w: int):
    """Rows (n x s) and columns (n x s) of the full-resolution pixels of grid cells (edges replicated)."""
    ar = torch.arange(s, device=cells.device)
    rows = ((cells // gw)[:, None] * s + ar).clamp(max=big_h - 1)
    cols = ((cells % gw)[:, None] * s + ar).clamp(max=big_w - 1)
    return rows, cols


def _upsampled_at(low: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, big_h: int, big_w: int) -> torch.Tensor:
    """Bilinear upsampling of low (1 x C x h x w) to big_h x big_w, only at these cells: C x n x s x s.

    Same sampling as ``F.interpolate(..., mode="bilinear", align_corners=False)``, without
    building the full-resolution picture.
    """
    n, s = rows.shape
    gy = (2 * (rows.to(low.dtype) + 0.5) / big_h - 1)[:, :, None].expand(n, s, s)
    gx = (2 * (cols.to(low.dtype) + 0.5) / big_w - 1)[:, None, :].expand(n, s, s)
    grid = torch.stack([gx, gy], dim=-1).reshape(1, n * s, s, 2)
    out = F.grid_sample(low, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(low.shape[1], n, s, s)


@torch.no_grad()
def aggregate_residual(
    image: torch.Tensor,
    hole: torch.Tensor,
    coarse: torch.Tensor,
    *,
    grid: int = 64,
    patch_size: int = 3,
    scale: float = 100.0,
    topk: int = 4,
    chunk: int = 256,
    inplace: bool = False,
) -> torch.Tensor:
    """Contextual residual aggregation: a low-resolution fill made sharp at full resolution.

    Interface (what ``fillgap.fill``'s ``cra`` strategy calls):

    - ``image``: N x 3 x H x W float in [0, 1], or uint8 0-255, full resolution (pixels under
      the hole are ignored);
    - ``hole``: N x 1 x H x W, > 0 = missing (any grey level counts as missing);
    - ``coarse``: N x 3 x h x w in [0, 1], a fill of the same window at low resolution (any
      method; h, w <= 512 is the intended use, same aspect as the image);
    - returns a new N x 3 x H x W tensor of ``image``'s dtype: ``image`` outside the hole
      (bit-identical), and inside ``upsample(coarse) + aggregated residual`` clamped to [0, 1]
      (uint8: rounded by ``fill.tensors.round_to_uint8_``, as ``fillgap.fill.composite`` rounds); grey levels
      are not blended (the caller composites). ``inplace=True``: the result is written into
      ``image`` (contiguous, and the caller no longer needs it), one window-sized copy less;
      safe, as only missing pixels are written and only known ones read.

    Steps: the blurred picture is the h x w picture (``coarse`` where a low-resolution pixel
    touches the hole, the area-downsampled image elsewhere) upsampled bilinearly, so the
    residual ``R = image - blur`` is exactly the detail a fill at h x w lacks. The picture is
    cut into cells of ``s = ceil(max(H, W) / grid)`` px; each hole cell is matched to the cells
    whose ``patch_size`` neighbourhood is fully known, on the coarse fill (at twice the grid
    resolution, minus the known mean colour, cosine similarity); a softmax with temperature
    ``scale`` over the ``topk`` best keys weights their full-resolution residual cells into it.
    Only hole cells and the chosen key cells are touched at full resolution, so the cost is a
    ``grid``-sized attention plus ``topk`` cell copies per hole cell, and memory is the output
    plus one area-downsampling pass.
    """
    if image.dim() != 4 or image.shape[1] != 3 or coarse.dim() != 4 or coarse.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"need image N x 3 x H x W and coarse N x 3 x h x w, got {tuple(image.shape)}, {tuple(coarse.shape)}"
        )
    n, _, big_h, big_w = image.shape
    if hole.shape != (n, 1, big_h, big_w):
        raise ValueError(f"hole must be {n} x 1 x {big_h} x {big_w}, got {tuple(hole.shape)}")
    if topk < 1 or grid < 1:
        raise ValueError("topk and grid must be at least 1")
    h, w = coarse.shape[-2:]
    s = max(1, math.ceil(max(big_h, big_w) / grid))
    gh, gw = math.ceil(big_h / s), math.ceil(big_w / s)
    inplace = inplace and image.is_contiguous()
    out = image if inplace else image.clone(memory_format=torch.contiguous_format)
    as_uint8 = out.dtype == torch.uint8
    for i in range(n):  # each item has its own hole cells as queries
        # The hole as given (no full-resolution float copy: a 12 MP window cannot spare it);
        # max-pooling then "> 0" = "any missing pixel under this cell".
        # a uint8 picture stays uint8 (a 12 MP window in floats is 4x the bytes): read as floats cell by cell
        img, holes, low = image[i : i + 1], hole[i : i + 1].float(), coarse[i : i + 1].float()
        if img.dtype != torch.uint8:
            img = img.float()
        if not (holes > 0).any():
            continue
        blur_low = torch.where(F.adaptive_max_pool2d(holes, (h, w)) > 0, low, area_resize(img, (h, w)))
        hole_grid = (F.max_pool2d(holes, s, ceil_mode=True) > 0).float()  # 1 x 1 x gh x gw
        # Matching features: the coarse fill over the grid's (padded) extent at 2x the grid,
        # each cell's 2 x 2 sub-pixels as channels, centred on the known mean colour.
        pad_h, pad_w = round((gh * s - big_h) * h / big_h), round((gw * s - big_w) * w / big_w)
        feat = F.pad(low, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else low
        feat = F.pixel_unshuffle(F.interpolate(feat, size=(2 * gh, 2 * gw), mode="area"), 2)
        known = 1 - hole_grid
        feat = feat - (feat * known).sum((2, 3), keepdim=True) / known.sum().clamp(min=1)

        queries = hole_grid.flatten().nonzero().flatten()
        valid = _known_keys(hole_grid, (gh, gw), patch_size)
        flat_out, flat_missing = out[i].view(3, -1), holes.reshape(-1) > 0
        for q, weights, idx in _match(feat, valid, queries, patch_size, scale, min(topk, gh * gw), chunk):
            rows, cols = _cell_pixels(q, gw, s, big_h, big_w)
            fill = _upsampled_at(low, rows, cols, big_h, big_w)  # 3 x c x s x s
            krows, kcols = _cell_pixels(idx[0].flatten(), gw, s, big_h, big_w)
            detail = as_float(img[0][:, krows[:, :, None], kcols[:, None, :]]) - _upsampled_at(
                blur_low, krows, kcols, big_h, big_w
            )
            detail = detail.view(3, *idx.shape[1:], s, s)  # 3 x c x K x s x s
            fill = (fill + (weights[0][None, :, :, None, None] * detail).sum(2)).clamp(0, 1)
            # Write the cells' in-picture pixels that are missing (cells never overlap).
            ar = torch.arange(s, device=q.device)
            y = (q // gw)[:, None, None] * s + ar[:, None]
            x = (q % gw)[:, None, None] * s + ar
            inside = ((y < big_h) & (x < big_w)).expand(-1, s, s)
            lin = (y * big_w + x).expand(-1, s, s)[inside]
            take = flat_missing[lin]
            fill = fill[:, inside][:, take]
            flat_out[:, lin[take]] = round_to_uint8_(fill) if as_uint8 else fill.to(out.dtype)
    return out
