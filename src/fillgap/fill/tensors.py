"""The one image convention inside fillgap and the conversions at its edges: pictures are
N x C x H x W floats in [0, 1] (or the same pixels as uint8, a quarter of the memory, until a
step needs floats), holes N x 1 x H x W (1 = missing); files hold uint8 H x W x C
(``fillgap.imageio``)."""

from __future__ import annotations

import numpy as np

from .._lazy import lazy

# Loaded on first use: a classical fill of uint8 arrays runs without torch.
torch = lazy("torch")
F = lazy("torch.nn.functional")


def to_tensor(rgb: np.ndarray, uint8: bool = False) -> torch.Tensor:
    """uint8 H x W x 3 -> float 1 x 3 x H x W in [0, 1] (``uint8=True``: the same pixels as 0-255,
    a quarter of the memory; ``as_float`` turns them into the float form later)."""
    rgb = np.ascontiguousarray(rgb)
    if not rgb.flags.writeable:  # torch warns on read-only arrays (e.g. np.asarray of a PIL image)
        rgb = rgb.copy()
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
    return image if uint8 else as_float(image)


def as_float(image: torch.Tensor) -> torch.Tensor:
    """A uint8 picture tensor as float32 in [0, 1] (a new tensor); a float one as it is."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image


def round_to_uint8_(image: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] -> uint8 0-255, rounded half up (the pipeline's one rounding, so a fill
    rounded early equals one rounded at composite time); ``image``'s values are consumed."""
    return image.mul_(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)


def area_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x C x H x W at ``size`` by area averaging: uint8 -> float32 in [0, 1], made one channel
    at a time (the same numbers: a 12 MP window's float copy would be 4x its bytes at the moment
    a fill's memory peaks); floats -> the same dtype and range."""
    if image.dtype != torch.uint8:
        return F.interpolate(image, size=size, mode="area")
    return torch.cat(
        [F.interpolate(as_float(image[:, c : c + 1]), size=size, mode="area") for c in range(image.shape[1])], dim=1
    )


def mask_to_tensor(mask: np.ndarray) -> torch.Tensor:
    """float H x W in [0, 1] -> 1 x 1 x H x W."""
    mask = np.ascontiguousarray(mask, dtype=np.float32)
    return torch.from_numpy(mask if mask.flags.writeable else mask.copy())[None, None]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float 1 x 3 x H x W (or 3 x H x W) in [0, 1] -> uint8 H x W x 3, rounded."""
    if image.dim() == 4:
        image = image[0]
    return image.detach().clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()
