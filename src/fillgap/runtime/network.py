"""The torch runtime: an ``InpaintModel`` run by torch (``TorchNetwork``), in bfloat16 where the
hardware computes it natively (``native_bf16``). Other runtimes (``onnx``) subclass it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from .._lazy import lazy, no_grad
from ..cancel import checkpoint
from .base import NETWORK_MAX_SIDE, FillMethod

if TYPE_CHECKING:
    from ..models import InpaintModel

torch = lazy("torch")
F = lazy("torch.nn.functional")


def _stop_if_cancelled(module, args) -> None:
    checkpoint()


class TorchNetwork(FillMethod):
    """An ``InpaintModel`` run by torch: fixed size and size multiple handled here."""

    kind = "network"
    # The fill's 2 x 2 checkerboard (strided upsampling) cut back to its surroundings' level
    # (filters.remove_excess_checker): the shipped network's left 1.2-1.3x the truth's energy.
    remove_checker = True

    def __init__(
        self,
        model: InpaintModel,
        name: str = "",
        source: str = "given",
        max_side: int = NETWORK_MAX_SIDE,
        bf16: bool | None = False,
        remove_checker: bool = True,
    ):
        self._parameters = sum(p.numel() for p in model.parameters())  # the trained network's count
        self.model = model.for_inference()  # e.g. batch norms folded (a copy: ``model`` stays as it is)
        # A large window's forward pass takes seconds to minutes: a caller that gave up
        # (fillgap.cancel, e.g. the server's client hung up) stops it at the next layer.
        for layer in self.model.modules():
            if next(layer.parameters(recurse=False), None) is not None:
                layer.register_forward_pre_hook(_stop_if_cancelled)
        # Convolutions in bfloat16 (torch autocast): True (``torch-bf16``), False (``torch``), or None
        # (``auto``: decided per call by the device the input is on, see ``native_bf16``).
        self.bf16 = bf16
        self.remove_checker = remove_checker
        self.name = name or model.registry_name or type(model).__name__
        self.source = source
        self.channels = model.channels
        self.fixed_size = model.fixed_size
        self.size_multiple = model.size_multiple
        self.max_side = max_side  # fixed-size networks resize inside fill(); the pipeline does not

    def parameters_count(self) -> int:
        return self._parameters

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The network call itself (other runtimes override this, the padding stays here)."""
        if self.bf16 or (self.bf16 is None and native_bf16(x.device.type)):
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.model(x, m).float()
        return self.model(x, m)

    @no_grad
    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        n, c, h, w = image.shape
        device = self.device
        x, m = image.to(device), hole.to(device)
        if self.channels == 1 and c == 3:
            x = x.mean(dim=1, keepdim=True)
        size = (h, w)
        if self.fixed_size:
            size = (self.fixed_size, self.fixed_size)
            down = size[0] < h or size[1] < w
            x = F.interpolate(x, size=size, mode="area" if down else "bicubic").clamp(0, 1)
            m = (F.interpolate(m, size=size, mode="area" if down else "bilinear") > 0).float()
        k = self.size_multiple
        ph, pw = (-size[0]) % k, (-size[1]) % k
        # At least 2k: a fully convolutional net's reflect padding needs feature maps of 2+ pixels
        # after its downsamplings (a 1x1 or 3x5 picture would otherwise crash inside the network).
        ph, pw = max(ph, 2 * k - size[0]), max(pw, 2 * k - size[1])
        if ph or pw:
            mode = "reflect" if ph < size[0] and pw < size[1] else "replicate"  # reflect needs pad < size
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
            m = F.pad(m, (0, pw, 0, ph), mode=mode)
        out = self._forward(x, m)[..., : size[0], : size[1]]
        if self.remove_checker:
            from ..filters import remove_excess_checker  # torch-level module: loaded with the first fill

            x, m = x[..., : size[0], : size[1]], m[..., : size[0], : size[1]] > 0
            filled = torch.where(m, out, x)
            out = torch.stack([remove_excess_checker(f, hole[0]) for f, hole in zip(filled, m)]) if len(m) else out
        if size != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bicubic").clamp(0, 1)
        if out.shape[1] == 1 and c == 3:
            out = out.repeat(1, 3, 1, 1)
        return out.to(image.device).float()


@functools.lru_cache(maxsize=None)
def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: a CPU with AVX512-BF16 or AMX (Linux
    /proc/cpuinfo), a CUDA GPU that computes it (Ampere or later). Elsewhere bf16 is emulated
    (slow) or not there."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags
