"""Training losses, composed from the config by name and weight.

Every loss takes ``pred, target, hole`` (N x C x H x W, N x 1 x H x W with 1 = hole) and
returns a scalar. ``hole_weight`` in the pixel losses makes errors inside the hole count
more than those outside (outside pixels are pasted back at fill time anyway).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FillgapError


def _weighted_mean(err: torch.Tensor, hole: torch.Tensor, hole_weight: float) -> torch.Tensor:
    w = 1.0 + (hole_weight - 1.0) * hole
    return (err * w).sum() / (w.sum() * err.shape[1])


def l1(pred, target, hole, hole_weight: float = 1.0):
    return _weighted_mean((pred - target).abs(), hole, hole_weight)


def mse(pred, target, hole, hole_weight: float = 1.0):
    return _weighted_mean((pred - target) ** 2, hole, hole_weight)


def hole_l1(pred, target, hole):
    """Mean absolute error inside the hole only (a report metric as well as a loss)."""
    return ((pred - target).abs() * hole).sum() / (hole.sum() * pred.shape[1]).clamp_min(1.0)


def fft_l1(pred, target, hole=None):
    """L1 between the amplitude and between the phase of the 2-D spectra (orthonormal FFT)."""
    fp, ft = torch.fft.rfft2(pred.float(), norm="ortho"), torch.fft.rfft2(target.float(), norm="ortho")
    amp = (fp.abs() - ft.abs()).abs().mean()
    # Phase difference wrapped to [-pi, pi], weighted by the target amplitude so that noise
    # in near-empty frequencies does not dominate.
    dphase = torch.angle(fp * ft.conj())
    phase = (dphase.abs() * ft.abs()).mean() / ft.abs().mean().clamp_min(1e-8)
    return amp + 0.1 * phase


def focal_frequency(pred, target, hole=None, alpha: float = 1.0):
    """Focal frequency loss (Jiang et al., ICCV 2021): squared spectral distance, each
    frequency weighted by its own (detached, max-normalised) distance ** alpha, so the
    frequencies the network gets most wrong weigh most."""
    fp, ft = torch.fft.fft2(pred.float(), norm="ortho"), torch.fft.fft2(target.float(), norm="ortho")
    dist = (fp - ft).abs() ** 2
    with torch.no_grad():
        w = dist.sqrt() ** alpha
        w = w / w.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (w * dist).mean()


def tv_border(pred, target, hole):
    """Total variation of the prediction on a 3-pixel band around the hole border (seams)."""
    band = F.max_pool2d(hole, 7, 1, 3) - (1 - F.max_pool2d(1 - hole, 7, 1, 3))
    dx = (pred[..., :, 1:] - pred[..., :, :-1]).abs() * band[..., :, 1:]
    dy = (pred[..., 1:, :] - pred[..., :-1, :]).abs() * band[..., 1:, :]
    return (dx.sum() + dy.sum()) / (band.sum() * pred.shape[1]).clamp_min(1.0)


def _local_detail(image: torch.Tensor, window: int) -> torch.Tensor:
    """Local fine-texture energy: RMS of the grey picture's 3x3 Laplacian over window x window cells."""
    grey = image.mean(dim=1, keepdim=True) if image.shape[1] == 3 else image
    kernel = grey.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    lap = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernel)
    return (F.avg_pool2d(lap**2, window, window, ceil_mode=True) + 1e-8).sqrt()


def texture_energy(pred, target, hole, window: int = 8):
    """L1 between the local Laplacian energy of the fill and of the truth, in cells touching the hole.

    Pixel losses reward the mean of all plausible fills, which is smooth; this one asks for as
    much fine texture as the truth has at that place, without asking for its exact position
    (the hole detail ratio of ``fillgap.eval.metrics``, made local and differentiable)."""
    cells = F.max_pool2d(hole, window, window, ceil_mode=True)
    diff = (_local_detail(pred, window) - _local_detail(target, window)).abs()
    return (diff * cells).sum() / cells.sum().clamp_min(1.0)


def _hole_checker(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Per picture (N): RMS over the hole of the grey picture filtered with [[1, -1], [-1, 1]] (the
    2 x 2 grid a strided or transposed convolution leaves)."""
    grey = image.mean(dim=1, keepdim=True) if image.shape[1] == 3 else image
    kernel = grey.new_tensor([[1.0, -1.0], [-1.0, 1.0]]).view(1, 1, 2, 2)
    response = F.conv2d(F.pad(grey, (0, 1, 0, 1), mode="replicate"), kernel) ** 2
    return ((response * hole).sum(dim=(1, 2, 3)) / hole.sum(dim=(1, 2, 3)).clamp_min(1.0) + 1e-8).sqrt()


def checker_match(pred, target, hole):
    """|the fill's 2 x 2 checker energy over the hole - the truth's|, per picture.

    The texture loss asks for the truth's Laplacian energy, and a grid pattern is the cheapest way
    to give it (the shipped network's fills carried 1.3-1.9x the truth's checker energy). Costing
    energy above the truth's cell by cell drove it to 4 % of the truth's (a soft fill at the pixel
    level); compared over the whole hole, the fill keeps the truth's amount of finest detail
    without having to guess where it lies."""
    return (_hole_checker(pred, hole) - _hole_checker(target, hole)).abs().mean()


LOSSES: dict[str, Callable] = {
    "l1": l1,
    "mse": mse,
    "hole_l1": hole_l1,
    "fft": fft_l1,
    "focal_freq": focal_frequency,
    "tv": tv_border,
    "texture": texture_energy,
    "checker": checker_match,
}
_PIXEL = {"l1", "mse"}


class CompositeLoss(nn.Module):
    """Weighted sum of named losses, e.g. ``{"l1": 10, "focal_freq": 1}``; returns (total, parts)."""

    def __init__(self, weights: dict[str, float], hole_weight: float = 1.0):
        super().__init__()
        unknown = sorted(set(weights) - set(LOSSES))
        if unknown:
            raise FillgapError(f"unknown loss '{unknown[0]}' (available: {', '.join(sorted(LOSSES))})")
        self.weights = {k: float(v) for k, v in weights.items() if v}
        self.hole_weight = hole_weight

    def forward(self, pred, target, hole):
        parts = {}
        for name, w in self.weights.items():
            fn = LOSSES[name]
            parts[name] = fn(pred, target, hole, self.hole_weight) if name in _PIXEL else fn(pred, target, hole)
        total = sum(self.weights[k] * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix style): one real/fake logit per overlapping patch."""

    def __init__(self, channels: int = 3, width: int = 32, layers: int = 3):
        super().__init__()
        seq = [nn.Conv2d(channels + 1, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = width
        for i in range(1, layers):
            nxt = min(ch * 2, 256)
            seq += [nn.Conv2d(ch, nxt, 4, 2, 1), nn.InstanceNorm2d(nxt, affine=True), nn.LeakyReLU(0.2, True)]
            ch = nxt
        seq += [nn.Conv2d(ch, 1, 4, 1, 1)]
        self.net = nn.Sequential(*seq)

    def forward(self, image, hole):
        return self.net(torch.cat([image, hole], dim=1))

    def features(self, image, hole) -> list[torch.Tensor]:
        """The activations after each LeakyReLU (what feature matching compares)."""
        x, feats = torch.cat([image, hole], dim=1), []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return feats


def generator_adversarial(disc: PatchDiscriminator, fake, hole):
    """Non-saturating generator loss: -log D(fake)."""
    return F.softplus(-disc(fake, hole)).mean()


def feature_matching(disc: PatchDiscriminator, real, fake, hole):
    """L1 between the discriminator's features of the real and the filled picture (pix2pixHD,
    LaMa): a denser, steadier signal than the real/fake logit alone, pulling the fill's local
    statistics (texture) towards the truth's."""
    with torch.no_grad():
        real_feats = disc.features(real, hole)
    fake_feats = disc.features(fake, hole)
    return sum(F.l1_loss(f, r) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


def discriminator_adversarial(disc: PatchDiscriminator, real, fake, hole, r1_weight: float = 1.0):
    """Non-saturating discriminator loss plus the R1 gradient penalty on real images."""
    real = real.detach().requires_grad_(True)
    real_logits = disc(real, hole)
    loss = F.softplus(-real_logits).mean() + F.softplus(disc(fake.detach(), hole)).mean()
    if r1_weight:
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        loss = loss + r1_weight * 0.5 * grad.pow(2).sum(dim=(1, 2, 3)).mean()
    return loss
