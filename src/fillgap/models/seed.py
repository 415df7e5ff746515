"""Two convolutional autoencoders from a published design (the seed of fillgap), layer for layer.

Both keep the design's input: the masked image alone (hole pixels = 0), no mask channel,
so the layer lists stay exactly as published. What we fixed, not copied:
- The study normalised inputs with ImageNet mean/std yet ended in a sigmoid that cannot
  reach negative targets; here inputs and targets are plain [0, 1] images, so the
  sigmoid can reach every target value.
- The study compared the output with the *erased* digit/photo, so the network learnt to
  copy the hole instead of filling it; fillgap's trainer compares with the clean image
  and also reports the error inside the hole.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register_model
from .base import InpaintModel


class SeedMnistAE(InpaintModel):
    """System 1: 1 x 28 x 28 digits, latent size ``latent`` (the design used 4)."""

    channels = 1
    fixed_size = 28

    def __init__(self, latent: int = 4):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1),
            nn.ReLU(True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(True),
            nn.Conv2d(16, 32, 3, stride=2, padding=0),
            nn.ReLU(True),
        )
        self.latent = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * 3 * 32, 128),
            nn.ReLU(True),
            nn.Linear(128, latent),
            nn.Linear(latent, 128),
            nn.ReLU(True),
            nn.Linear(128, 3 * 3 * 32),
            nn.ReLU(True),
        )
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (32, 3, 3)),
            nn.ConvTranspose2d(32, 16, 3, stride=2, output_padding=0),
            nn.BatchNorm2d(16),
            nn.ReLU(True),
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(True),
            nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )

    def predict(self, masked: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.latent(self.encoder(masked)))


class SeedColorAE(InpaintModel):
    """System 2: 3 x 512 x 512 photos through a 128-number bottleneck."""

    fixed_size = 512

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(True),
            nn.Conv2d(16, 32, 3, stride=2, padding=0),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.ReLU(True),
        )
        self.latent = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2048, 256),
            nn.ReLU(True),
            nn.Linear(256, 128),
            nn.Linear(128, 256),
            nn.ReLU(True),
            nn.Linear(256, 2048),
            nn.ReLU(True),
            nn.Unflatten(1, (32, 8, 8)),
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.ConvTranspose2d(8, 3, 19, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )

    def predict(self, masked: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.latent(self.encoder(masked)))


@register_model("seed-mnist-ae")
def seed_mnist_ae(latent: int = 4) -> SeedMnistAE:
    return SeedMnistAE(latent)


@register_model("seed-color-ae")
def seed_color_ae() -> SeedColorAE:
    return SeedColorAE()
