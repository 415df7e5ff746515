"""What every fill method is: ``FillMethod``, an object with ``fill(image, hole) -> image`` and the
limits the pipeline (``fillgap.fill``) needs. Images are N x C x H x W floats in [0, 1], holes
N x 1 x H x W (1 = missing).

``max_side``: the longest window side a method works at (larger windows are scaled down or use
the ``cra`` strategy); ``size_multiple`` and ``fixed_size`` are handled inside ``fill``.
``finish``: a last step on the window at its own resolution, after any scaling (grain belongs
to the final pixels: added at a working size and scaled up, it would come out coarse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NETWORK_MAX_SIDE = 1024  # FFC networks: largest window side filled at native resolution


class FillMethod:
    """Base class: a fill method and its limits. Subclasses implement ``fill``."""

    name: str = ""
    kind: str = ""  # "classical" | "network"
    source: str = ""  # where it comes from (function, checkpoint path, registry name)
    max_side: int = NETWORK_MAX_SIDE
    size_multiple: int = 1
    fixed_size: int | None = None
    batchable: bool = True  # windows of the same size may share one call

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, image: torch.Tensor, hole: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """The window's fill at its own resolution, last step (``filled``: N x 3 x H x W floats in
        [0, 1], or uint8 written over the hole of ``image``, as the ``cra`` strategy returns it).
        The default: as it is."""
        return filled

    @property
    def network(self) -> FillMethod:
        """The method that runs the weights (its model, device, metadata): itself; a method built
        on another one's fill (the texture stage) answers with that one."""
        return self

    def parameters_count(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.source})>"
