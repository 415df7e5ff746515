"""The one table of fill methods (``METHODS``) and the one of network runtimes (``RUNTIMES``).

Every name ``get_method`` (``--model``) takes is an entry of ``METHODS``, registered once:
- ``shipped``: a network with its weights shipped in ``fillgap/weights`` and the model card beside them;
- ``textured``: another entry's fill with the texture stage on top (``fillgap.texture``);
- ``classical``: a function on uint8 pictures (``fillgap.methods.classical``, ``@classical(name, max_side)``).

Architectures (``fillgap.models``, registered with ``@register_model``) are not fill methods until
trained: ``fillgap models`` lists them apart, as trainable. A runtime turns a torch network into a
method (``register_runtime``); ``onnx`` is one, loaded only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..runtime.base import NETWORK_MAX_SIDE, FillMethod
from ..runtime.network import TorchNetwork

if TYPE_CHECKING:
    from ..models import InpaintModel

KINDS = ("shipped", "textured", "classical")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    kind: str  # one of KINDS
    summary: str  # the line `fillgap models` shows
    max_side: int = NETWORK_MAX_SIDE  # the longest window side filled at native resolution
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # classical: uint8 fill
    weights: Path | None = None  # shipped: the weights file ...
    card: str | None = None  # ... and its model card (a file beside it)
    base: str | None = None  # textured: the entry whose fill gives the layout


METHODS: dict[str, MethodEntry] = {}


def register_method(entry: MethodEntry) -> MethodEntry:
    if entry.kind not in KINDS:
        raise ValueError(f"unknown method kind {entry.kind!r} (one of {', '.join(KINDS)})")
    if entry.name in METHODS:
        raise ValueError(f"method {entry.name!r} is registered twice")
    METHODS[entry.name] = entry
    return entry


def classical(name: str, max_side: int):
    """Register the decorated uint8 fill function as the classical method ``name``."""

    def register(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        register_method(MethodEntry(name, "classical", "classical", max_side, fn=fn))
        return fn

    return register


def names(kind: str | None = None) -> list[str]:
    return [n for n, e in METHODS.items() if kind is None or e.kind == kind]


def _onnx_runtime(model: InpaintModel, source: str) -> FillMethod:
    from ..runtime.onnx import OnnxNetwork  # onnxruntime loads only when asked for

    return OnnxNetwork.from_model(model, source)


DEFAULT_RUNTIME = "auto"
RUNTIMES: dict[str, Callable[[InpaintModel, str], FillMethod]] = {
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
    RUNTIMES[name] = factory


def runtimes() -> list[str]:
    return list(RUNTIMES)
