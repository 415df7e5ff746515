"""Contextual attention (Yu et al., CVPR 2018), the module and the matching that
``fillgap.fill.cra`` (contextual residual aggregation) reuses.

Pure torch, batched, CPU or CUDA. Each hole position looks at every known position of a
feature map: cosine similarity of their ``patch_size`` x ``patch_size`` patches, a softmax
(with a temperature, ``scale``) over the known positions only, and the output is the
weighted sum of the known positions' *values*. Values may live at a higher resolution than
the features (an integer factor ``s`` per side): each feature position then owns an
``s`` x ``s`` cell of the value map, which is how CRA matches at low resolution and copies
full-resolution detail.

Memory stays bounded: scores are computed for ``chunk`` query positions at a time, so the
largest score tensor is ``N x chunk x positions``, never positions squared; with ``topk``
only the best keys' values are gathered, which keeps large value cells cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..cancel import checkpoint

__all__ = ["ContextualAttention", "AttentionBlock", "contextual_attention"]


def _patches(x: torch.Tensor, k: int) -> torch.Tensor:
    """N x C x h x w -> N x (h*w) x (C*k*k): the k x k patch around every position (edges replicated)."""
    r = k // 2
    if r:
        x = F.pad(x, (r, r, r, r), mode="replicate")
    return F.unfold(x, k).transpose(1, 2)


def _hole_at(hole: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A hole mask at another resolution: a cell is missing if any pixel of it is."""
    hole = (hole > 0).to(torch.float32)
    if tuple(hole.shape[-2:]) != tuple(size):
        hole = F.adaptive_max_pool2d(hole, size)
    return hole


def _known_keys(hole: torch.Tensor, size: tuple[int, int], k: int) -> torch.Tensor:
    """N x L bool: positions whose whole k x k patch is known (an item with none: known centres)."""
    missing = _hole_at(hole, size)
    valid = (F.max_pool2d(missing, k, 1, k // 2) if k > 1 else missing).flatten(1) == 0
    centre = missing.flatten(1) == 0
    return torch.where(valid.any(1, keepdim=True), valid, centre)


def _match(
    feat: torch.Tensor, valid: torch.Tensor, queries: torch.Tensor, k: int, scale: float, topk: int | None, chunk: int
):
    """Yield (query indices, weights N x c x K, key indices N x c x K or None = all L keys), chunk by chunk."""
    keys = F.normalize(_patches(feat, k), dim=-1, eps=1e-6)  # N x L x D
    length = keys.shape[1]
    for start in range(0, queries.numel(), chunk):
        checkpoint()  # a large window takes many chunks: a caller may stop it between them
        q = queries[start : start + chunk]
        scores = keys[:, q] @ keys.transpose(1, 2)  # N x c x L cosine similarities
        scores = scores.masked_fill(~valid[:, None, :], float("-inf")) * scale
        idx = None
        if topk is not None and topk <= length:
            scores, idx = scores.topk(topk, dim=-1)
        yield q, torch.softmax(scores, dim=-1).nan_to_num(0.0), idx  # an item without keys: zero weights


def contextual_attention(
    feat: torch.Tensor,
    hole: torch.Tensor,
    value: torch.Tensor | None = None,
    *,
    patch_size: int = 3,
    scale: float = 10.0,
    topk: int | None = None,
    fold: bool = True,
    queries: torch.Tensor | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Attention from query positions to known key positions; see the module docstring.

    feat: N x C x h x w features used for matching; hole: N x 1 x h' x w' (> 0 = missing;
    resized to h x w by "any missing pixel"); value: N x Cv x (s*h) x (s*w), default ``feat``
    (s = 1). Keys are the positions whose whole patch is known (if an item has none: those
    whose centre is known; if none either, its output is zero). ``queries``: flat indices
    (y * w + x) of the positions to compute, shared by the batch; default all. ``fold``: each
    query writes its value patch's ``patch_size`` x ``patch_size`` cells around itself and
    overlapping writes are averaged (Yu et al.'s transposed convolution); without it, only
    its own cell. Returns N x Cv x (s*h) x (s*w); cells no query writes are zero.
    """
    n, _, h, w = feat.shape
    value = feat if value is None else value
    vh, vw = value.shape[-2:]
    if value.shape[0] != n or vh % h or vw % w or vh // h != vw // w:
        raise ValueError(f"value {tuple(value.shape)} must be an integer multiple of features {tuple(feat.shape)}")
    s, cv, r, dev = vh // h, value.shape[1], patch_size // 2, feat.device
    length = h * w
    valid = _known_keys(hole.to(dev), (h, w), patch_size)
    # Each position's s x s value cell as one vector: N x L x (Cv*s*s).
    cells = (F.pixel_unshuffle(value, s) if s > 1 else value).flatten(2).transpose(1, 2)
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)] if fold else [(0, 0)]
    queries = torch.arange(length, device=dev) if queries is None else queries.to(dev).long()

    out = cells.new_zeros(n, length, cells.shape[-1])
    count = cells.new_zeros(length)
    batch = torch.arange(n, device=dev)[:, None, None]
    for q, weights, idx in _match(feat, valid, queries, patch_size, scale, topk, chunk):
        for dy, dx in offsets:
            # Key j's value patch at this offset is the cell (y_j + dy, x_j + dx), edges replicated...
            src = (ys + dy).clamp(0, h - 1) * w + (xs + dx).clamp(0, w - 1)
            if idx is None:
                vals = weights @ cells[:, src]
            else:
                vals = (weights.unsqueeze(-1) * cells[batch, src[idx]]).sum(2)
            # ... and it lands on the cell (y_q + dy, x_q + dx) of the output.
            qy, qx = ys[q] + dy, xs[q] + dx
            inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
            dest = (qy * w + qx)[inside]
            out.index_add_(1, dest, vals[:, inside])
            count.index_add_(0, dest, torch.ones_like(dest, dtype=count.dtype))
    out = out / count.clamp(min=1)[None, :, None]
    out = out.transpose(1, 2).reshape(n, cv * s * s, h, w)
    return F.pixel_shuffle(out, s) if s > 1 else out


class ContextualAttention(nn.Module):
    """Softmax attention from hole patches to known patches, every position of a batch.

    ``forward(feat, hole, value=None)``: see :func:`contextual_attention` (no parameters of
    its own; cosine similarity makes it scale-free in ``feat``).
    """

    def __init__(
        self, patch_size: int = 3, scale: float = 10.0, topk: int | None = None, fold: bool = True, chunk: int = 1024
    ):
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError("patch_size must be odd and positive")
        self.patch_size, self.scale, self.topk, self.fold, self.chunk = patch_size, scale, topk, fold, chunk

    def forward(self, feat: torch.Tensor, hole: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        return contextual_attention(
            feat,
            hole,
            value,
            patch_size=self.patch_size,
            scale=self.scale,
            topk=self.topk,
            fold=self.fold,
            chunk=self.chunk,
        )

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, scale={self.scale}, topk={self.topk}, fold={self.fold}"


class AttentionBlock(nn.Module):
    """Residual contextual-attention block for a generator: ``x + out(attention(key(x), hole, x))``.

    Matching runs on a 1x1 projection (``key_ch`` channels, cheap scores); the values are the
    block's input itself. ``out`` starts at zero, so a new block is the identity. Maps with
    more than ``max_positions`` positions (big pictures at inference) are matched on
    f x f-averaged keys and copy f x f value cells, as CRA does, so the cost stays bounded.
    """

    def __init__(
        self, ch: int, key_ch: int = 32, patch_size: int = 3, scale: float = 10.0, max_positions: int = 64 * 64
    ):
        super().__init__()
        self.key = nn.Conv2d(ch, key_ch, 1)
        self.attention = ContextualAttention(patch_size, scale, fold=False)
        self.out = nn.Conv2d(ch, ch, 1)
        self.max_positions = max_positions
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = max(1, math.ceil(math.sqrt(h * w / self.max_positions)))
        value = x
        if f > 1:
            value = F.pad(x, (0, -w % f, 0, -h % f), mode="replicate")
        missing = _hole_at(hole, value.shape[-2:]).to(x)
        keys = self.key(value)
        if f > 1:
            keys, missing = F.avg_pool2d(keys, f), F.max_pool2d(missing, f)
        y = self.attention(keys, missing, value)[..., :h, :w]
        return x + self.out(y)
