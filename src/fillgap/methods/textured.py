"""``TexturedMethod``: a method's fill as the layout, the picture's own patches as the texture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy, no_grad
from ..runtime.base import FillMethod

if TYPE_CHECKING:
    from ..grain import GrainSettings
    from ..texture import TextureSettings

torch = lazy("torch")
F = lazy("torch.nn.functional")


class TexturedMethod(FillMethod):
    """A method's fill as the layout, the picture's own patches as the texture (``fillgap.texture``).

    Its limits are the base's: windows the base fills at native size get the texture at native
    size; larger ones go through the pipeline's ``cra`` strategy (texture at its working size,
    the context's residuals on top), thin holes through its native-resolution tiles. Copying at
    full size up to 4096 px was tried: a 12 MP picture's 5 % blob took 6 s and 1.8 GB, and thin
    scratches lost their tiles (29.5 dB against 32.0, bench/hires.py)."""

    def __init__(
        self, base: FillMethod, name: str, settings: TextureSettings | None = None, grain: GrainSettings | None = None
    ):
        from ..grain import DEFAULT_GRAIN  # torch: only when a textured method is made
        from ..texture import DEFAULT_SETTINGS

        self.base, self.name, self.settings = base, name, settings or DEFAULT_SETTINGS
        self.grain = grain or DEFAULT_GRAIN
        self.kind = f"{base.kind} + texture"
        self.source = f"{base.source} + fillgap.texture"
        self.max_side, self.fixed_size = base.max_side, base.fixed_size  # size_multiple: the base pads itself

    @property
    def network(self) -> FillMethod:
        return self.base.network

    def parameters_count(self) -> int:
        return self.base.parameters_count()

    @no_grad
    def finish(self, image: torch.Tensor, hole: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """The photo's grain and JPEG blocks in the fill, at the window's own resolution
        (``fillgap.grain``)."""
        from ..grain import add_grain

        return add_grain(image, hole, self.base.finish(image, hole, filled), self.grain)

    @no_grad
    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        from ..texture import guide_scale, synthesize

        image = image.float()
        scale = guide_scale(hole, self.settings)
        if scale >= 1.0:
            return synthesize(image, hole, self.base.fill(image, hole), self.settings)
        # a wide hole: the base fills it at its training scale, the texture restores the detail
        h, w = image.shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        small_hole = (F.interpolate(hole.float(), size=size, mode="area") > 0).float()
        small = self.base.fill(F.interpolate(image, size=size, mode="area"), small_hole)
        guide = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        return synthesize(image, hole, guide, self.settings)
