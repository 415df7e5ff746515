"""The small base class every inpainting network implements."""

from __future__ import annotations

import torch
from torch import nn


class InpaintModel(nn.Module):
    """``forward(image, mask) -> image``: N x C x H x W in [0, 1], mask N x 1 x H x W, 1 = hole.

    Subclasses implement ``predict(image, hole)``; the base class makes sure no network ever
    sees the pixels under the hole: it zeroes them and passes a binary hole (any grey
    level > 0 counts as hole, so no trace of the removed object can leak into the fill).
    Blending grey levels and keeping known pixels exact happen in ``fillgap.fill``.

    Class attributes tell ``fillgap.fill`` how to feed the network:
    ``fixed_size``: the only input size it accepts (the image is resized to it), or None;
    ``size_multiple``: H and W must be multiples of this (the image is padded to it).
    """

    channels: int = 3
    fixed_size: int | None = None
    size_multiple: int = 1
    registry_name: str = ""
    registry_kwargs: dict = {}

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hole = (mask > 0).to(image.dtype)
        return self.predict(image * (1 - hole), hole)

    def predict(self, masked: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def for_inference(self) -> "InpaintModel":
        """The network to run fills with: this one in eval mode, or an equivalent faster copy
        (e.g. batch norms folded); never changes ``self``'s weights."""
        return self.eval()
