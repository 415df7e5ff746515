"""Small torch filters shared by the texture and grain stages (C x H x W floats, H x W masks)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """C x H x W ``x`` blurred by a Gaussian of ``sigma`` pixels (borders replicated)."""
    if sigma > 4:  # a wide blur on a smaller copy: the same result to the eye, a fraction of the taps
        k = int(sigma // 2)
        small = F.avg_pool2d(x[None], k, stride=k, ceil_mode=True)[0]
        return F.interpolate(
            gaussian_blur(small, sigma / k)[None], size=x.shape[-2:], mode="bilinear", align_corners=False
        )[0]
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """H x W bool ``mask`` grown by ``r`` pixels (a square neighbourhood): a row pass and a column
    pass, 2 (2r + 1) comparisons a pixel instead of (2r + 1)^2."""
    if r <= 0:
        return mask
    k = 2 * r + 1
    rows = F.max_pool2d(mask[None, None].float(), (1, k), stride=1, padding=(0, r))
    return F.max_pool2d(rows, (k, 1), stride=1, padding=(r, 0))[0, 0] > 0


def known_mean(
    values: torch.Tensor, known: torch.Tensor, sigma: float, wide_sigma: float, min_weight: float
) -> torch.Tensor:
    """C x H x W: every pixel's mean of ``values`` over the ``known`` pixels (1 x H x W, 0 or 1)
    around it, a normalised blur of ``sigma``; where the known weight there is below
    ``min_weight`` (deep inside a hole), the same over ``wide_sigma``."""
    weighted = values * known
    weight = gaussian_blur(known, sigma)
    local = gaussian_blur(weighted, sigma) / weight.clamp(min=1e-6)
    wide = gaussian_blur(weighted, wide_sigma) / gaussian_blur(known, wide_sigma).clamp(min=1e-6)
    return torch.where(weight > min_weight, local, wide)
