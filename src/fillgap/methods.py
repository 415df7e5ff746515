"""One registry of fill methods: classical algorithms beside the networks.

A method is an object with ``fill(image, hole) -> image`` (image N x C x H x W float in
[0, 1], hole N x 1 x H x W, 1 = missing) and the limits the pipeline (``fillgap.fill``)
needs: ``max_side`` (the longest window side it works at; larger windows are scaled down or
use the ``cra`` strategy), ``size_multiple`` and ``fixed_size`` (handled inside ``fill``).

``get_method(spec)`` turns what a user names into a method:
- None: the shipped default network;
- ``fillgap-texture``: the default network's fill with the texture stage (``fillgap.texture``);
- a classical name (``opencv-telea``, ``opencv-ns``, ``opencv-fsr``, ``opencv-shiftmap``,
  ``skimage-biharmonic``, ``fillgap-diffusion``, ``mean-fill``);
- a network name of ``fillgap.models`` (``ffc-small``, ...) with ``allow_untrained=True`` only:
  a trainable architecture with fresh weights, for tests and timing, not a fill method;
- a checkpoint path (``.pt`` / ``.safetensors``);
- a loaded ``InpaintModel`` or an existing ``FillMethod``.

Other runtimes plug in with ``register_runtime("onnx", factory)``: ``factory(model, source)``
gets the torch network (and where it came from) and returns a ``FillMethod``;
``get_method(spec, runtime="onnx")`` uses it for every network.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ._lazy import lazy, no_grad
from .checkpoint import shipped_names
from .cancel import checkpoint
from .classical import CLASSICAL
from .errors import FillgapError, did_you_mean
from .models import model_names

if TYPE_CHECKING:
    from .models import InpaintModel
    from .texture import TextureSettings

# Loaded on first use: a classical method runs on numpy arrays without torch (fillgap._lazy).
torch = lazy("torch")
F = lazy("torch.nn.functional")

DEFAULT_NAME = "fillgap-default"
# Methods that put the texture stage (``fillgap.texture``) on a network's fill: name -> the network
TEXTURED = {"fillgap-texture": "fillgap-default"}

NETWORK_MAX_SIDE = 1024  # FFC networks: largest window side filled at native resolution


class FillMethod:
    """Base class: a fill method and its limits. Subclasses implement ``fill``."""

    name: str = ""
    kind: str = ""             # "classical" | "network"
    source: str = ""           # where it comes from (function, checkpoint path, registry name)
    max_side: int = NETWORK_MAX_SIDE
    size_multiple: int = 1
    fixed_size: int | None = None
    batchable: bool = True     # windows of the same size may share one call

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def parameters_count(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.source})>"


class ClassicalMethod(FillMethod):
    """A ``fillgap.classical`` function (uint8 H x W x 3 in and out) as a method."""

    kind = "classical"

    def __init__(self, name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], max_side: int):
        self.name, self.fn, self.max_side = name, fn, max_side
        self.source = f"fillgap.classical:{fn.__name__}"

    def fill_array(self, img: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """One picture, uint8 H x W x C, and its bool H x W hole: the fill as uint8 H x W x C. The
        pipeline's route without torch (``fillgap.fill.inpaint``, windows at native resolution)."""
        if hole.all():
            # nothing known to fill from: mid grey, as the networks and mean-fill give (Telea and NS
            # would return the picture unchanged, the biharmonic solve fails)
            return np.full_like(img, 128)
        if img.shape[2] == 1:  # grey pictures: the classical functions want three channels
            return self.fn(np.repeat(img, 3, axis=2), hole).mean(axis=2, keepdims=True)
        return self.fn(img, hole)

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        # The pipeline hands over uint8 pictures divided by 255, so this round trip is exact.
        imgs = image.detach().float().mul(255).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        holes = (hole[:, 0] > 0).cpu().numpy()
        outs = [self.fill_array(img, h) for img, h in zip(imgs, holes)]
        out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).float().div_(255.0)
        return out.to(image.device)


# Largest window side each classical method fills at native resolution (beyond: the pipeline's
# strategies scale down or aggregate residuals). Telea/NS cost grows with the hole only; FSR
# and the biharmonic solve grow much faster, so they get a working size like a network. ShiftMap
# grows faster still, with the picture and the hole (2 loaded cores, a square hole of 3 / 10 / 30 %:
# 0.4 / 0.9 / 3.7 s at 256 px, 1.7 / 5 / 20 s at 512 px; a 3 % hole at 1024 px: 12-18 s, where FSR
# takes 1.3-2.2 s), so it works at 512 px.
CLASSICAL_MAX_SIDE = {"opencv-telea": 8192, "opencv-ns": 8192, "opencv-fsr": 1024, "opencv-shiftmap": 512,
                      "skimage-biharmonic": 1024, "fillgap-diffusion": 4096, "mean-fill": 1 << 20}


def _stop_if_cancelled(module, args) -> None:
    checkpoint()


class TorchNetwork(FillMethod):
    """An ``InpaintModel`` run by torch: fixed size and size multiple handled here."""

    kind = "network"

    def __init__(self, model: InpaintModel, name: str = "", source: str = "given", max_side: int = NETWORK_MAX_SIDE,
                 bf16: bool | None = False):
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
        if size != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bicubic").clamp(0, 1)
        if out.shape[1] == 1 and c == 3:
            out = out.repeat(1, 3, 1, 1)
        return out.to(image.device).float()


class TexturedMethod(FillMethod):
    """A method's fill as the layout, the picture's own patches as the texture (``fillgap.texture``).

    Its limits are the base's: windows the base fills at native size get the texture at native
    size; larger ones go through the pipeline's ``cra`` strategy (texture at its working size,
    the context's residuals on top), thin holes through its native-resolution tiles. Copying at
    full size up to 4096 px was tried: a 12 MP picture's 5 % blob took 6 s and 1.8 GB, and thin
    scratches lost their tiles (29.5 dB against 32.0, bench/hires.py)."""

    def __init__(self, base: FillMethod, name: str, settings: TextureSettings | None = None):
        from .texture import DEFAULT_SETTINGS  # torch: only when a textured method is made

        self.base, self.name, self.settings = base, name, settings or DEFAULT_SETTINGS
        self.kind = f"{base.kind} + texture"
        self.source = f"{base.source} + fillgap.texture"
        self.max_side, self.fixed_size = base.max_side, base.fixed_size  # size_multiple: the base pads itself

    def parameters_count(self) -> int:
        return self.base.parameters_count()

    @no_grad
    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        from .texture import synthesize

        image = image.float()
        return synthesize(image, hole, self.base.fill(image, hole), self.settings)


def _onnx_runtime(model: InpaintModel, source: str) -> FillMethod:
    from .runtime.onnx import OnnxNetwork  # onnxruntime loads only when asked for
    return OnnxNetwork.from_model(model, source)


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


DEFAULT_RUNTIME = "auto"
_RUNTIMES: dict[str, Callable[[InpaintModel, str], FillMethod]] = {
    # the default: torch, in bfloat16 where the hardware has it (bench/precision.py: the same hole
    # PSNR to 0.01 dB, 1.3x faster at 512 px on an AVX512-BF16 CPU), else fp32
    "auto": lambda model, source: TorchNetwork(model, source=source, bf16=None),
    "torch": lambda model, source: TorchNetwork(model, source=source),
    # bfloat16 convolutions: about 1.3x faster on CPUs with native bf16 (AVX512-BF16, AMX) and on GPUs,
    # fills within about 1/255 of fp32 (bench/precision.py measures both)
    "torch-bf16": lambda model, source: TorchNetwork(model, source=source, bf16=True),
    "onnx": _onnx_runtime,
}


def register_runtime(name: str, factory: Callable[[InpaintModel, str], FillMethod]) -> None:
    """Make ``get_method(..., runtime=name)`` wrap networks with ``factory(model, source)``."""
    _RUNTIMES[name] = factory


def runtimes() -> list[str]:
    return list(_RUNTIMES)


def classical_names() -> list[str]:
    return list(CLASSICAL)


def method_names() -> list[str]:
    """Every name ``get_method`` accepts besides paths: default, classical, registered networks."""
    return [*shipped_names(), *TEXTURED, *CLASSICAL, *model_names()]


def _network(model: InpaintModel, source: str, runtime: str, name: str = "") -> FillMethod:
    if runtime not in _RUNTIMES:
        raise FillgapError(f"unknown runtime '{runtime}'{did_you_mean(runtime, _RUNTIMES)} "
                           f"(available: {', '.join(_RUNTIMES)})")
    method = _RUNTIMES[runtime](model, source)
    if name:
        method.name = name
    return method


def get_method(spec: FillMethod | InpaintModel | str | Path | None = None,
               runtime: str = DEFAULT_RUNTIME, allow_untrained: bool = False) -> FillMethod:
    """The fill method named by ``spec`` (see the module doc); anything else is a FillgapError.
    ``allow_untrained``: accept an architecture's name (fresh, untrained weights)."""
    if isinstance(spec, FillMethod):
        return spec
    if spec is not None and not isinstance(spec, (str, Path)):
        from .models import InpaintModel  # loads torch: a network object means torch is there anyway
        if isinstance(spec, InpaintModel):
            return _network(spec, "given", runtime)
        raise FillgapError(f"model must be a method name, a checkpoint path or a loaded model, "
                           f"got {type(spec).__name__}")
    from .checkpoint import DEFAULT_WEIGHTS, RELEASED_WEIGHTS, load_model

    text = DEFAULT_NAME if spec is None else str(spec)
    if text in TEXTURED:
        return TexturedMethod(get_method(TEXTURED[text], runtime), text)
    variant = shipped_names().get(text)
    if variant is not None:
        path = RELEASED_WEIGHTS[variant]
        # None for the default: load_model says "missing from the package" if it is gone
        return _network(load_model(None if path == DEFAULT_WEIGHTS else path), str(path), runtime, text)
    if text in CLASSICAL:
        return ClassicalMethod(text, CLASSICAL[text], CLASSICAL_MAX_SIDE.get(text, NETWORK_MAX_SIDE))
    if text in model_names() and not Path(text).exists():
        if not allow_untrained:
            raise _untrained(text)
        from .models import create_model
        return _network(create_model(text).eval(), f"fillgap.models:{text} (untrained)", runtime, text)
    path = Path(text)
    if path.suffix.lower() == ".onnx":  # made by `fillgap export --onnx`: runs in onnxruntime whatever the runtime
        from .runtime.onnx import OnnxNetwork
        return OnnxNetwork(path)
    if not path.exists() and path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise _unknown(text)
    return _network(load_model(path), str(path), runtime)


CHECKPOINT_SUFFIXES = (".pt", ".safetensors", ".pth")


def fill_method_names() -> list[str]:
    """The names that fill as they are: the shipped networks, the textured methods and the classical ones."""
    return [*shipped_names(), *TEXTURED, *CLASSICAL]


def _unknown(text: str) -> FillgapError:
    names = fill_method_names()
    return FillgapError(f"unknown model '{text}'{did_you_mean(text, names)}: not a method name "
                        f"({', '.join(names)}) nor an existing checkpoint file")


def _untrained(text: str) -> FillgapError:
    # An architecture's fresh weights: an FFC net gives its diffusion prior, an autoencoder noise;
    # either way not what the name promises, and it used to run and exit 0.
    return FillgapError(f"'{text}' is a trainable architecture, not a fill method (its weights would be "
                        f"untrained): train it (fillgap train --model {text}) and pass the checkpoint, or "
                        f"use a method from `fillgap models` ({', '.join(fill_method_names())})")


def check_spec(spec: FillMethod | InpaintModel | str | Path | None, allow_untrained: bool = False) -> None:
    """Refuse a name that is no method and no file, or an untrained architecture's name, as
    ``get_method`` would, without loading anything: the CLI and ``fill_file`` check it before
    reading a picture."""
    if isinstance(spec, (str, Path)):
        text, path = str(spec), Path(spec)
        if path.exists():
            return
        if text in model_names() and not allow_untrained:
            raise _untrained(text)
        if text not in method_names() and path.suffix.lower() not in (*CHECKPOINT_SUFFIXES, ".onnx"):
            raise _unknown(text)


@dataclass
class MethodInfo:
    name: str
    kind: str
    parameters: int
    max_side: int
    default: bool
    trainable: bool = False  # an architecture, not a fill method: no weights until trained


def list_methods() -> list[MethodInfo]:
    """Every named method for ``fillgap models``: the shipped default, classical, and the registered
    networks as trainable architectures (``trainable``)."""
    from .checkpoint import RELEASED_NOTES, RELEASED_WEIGHTS
    from .models import create_model, list_models

    rows = []
    for name, variant in shipped_names().items():
        if RELEASED_WEIGHTS[variant].exists():
            m = get_method(name)
            rows.append(MethodInfo(name, RELEASED_NOTES[variant], m.parameters_count(), m.max_side,
                                   name == DEFAULT_NAME))
    for name, base in TEXTURED.items():
        if base in [r.name for r in rows]:
            m = get_method(name)
            rows.append(MethodInfo(name, "network + texture from the picture", m.parameters_count(), m.max_side,
                                   name == DEFAULT_NAME))
    for name in CLASSICAL:
        rows.append(MethodInfo(name, "classical", 0, CLASSICAL_MAX_SIDE.get(name, NETWORK_MAX_SIDE), False))
    for name in list_models():
        net = create_model(name)
        rows.append(MethodInfo(name, "architecture", sum(p.numel() for p in net.parameters()),
                               net.fixed_size or NETWORK_MAX_SIDE, False, trainable=True))
    return rows


__all__ = ["FillMethod", "ClassicalMethod", "TorchNetwork", "TexturedMethod", "TEXTURED", "get_method", "check_spec",
           "list_methods", "register_runtime", "runtimes", "method_names", "fill_method_names", "classical_names",
           "shipped_names", "native_bf16", "DEFAULT_NAME", "DEFAULT_RUNTIME"]
