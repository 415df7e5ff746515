"""Fill methods: classical algorithms beside the networks, all in one table (``registry.METHODS``).

A method is a ``FillMethod`` (``fillgap.runtime.base``): ``fill(image, hole) -> image`` and the
limits the pipeline needs. ``get_method(spec)`` turns what a user names into one:
- None: the default, ``fillgap-texture`` (``DEFAULT_NAME``);
- a registered name (``fillgap models`` lists them): shipped networks (``fillgap-network``,
  ``fillgap-smooth``), ``fillgap-texture`` (the network's fill with the texture stage) and the
  classical methods (``opencv-telea``, ``opencv-ns``, ``opencv-fsr``, ``opencv-shiftmap``,
  ``skimage-biharmonic``, ``fillgap-diffusion``, ``mean-fill``);
- an architecture of ``fillgap.models`` (``ffc-small``, ...) with ``allow_untrained=True`` only:
  fresh weights, for tests and timing, not a fill method;
- a checkpoint path (``.pt`` / ``.safetensors``) or an exported ``.onnx`` file;
- a loaded ``InpaintModel`` or an existing ``FillMethod``.

Networks run in a runtime (``register_runtime``; ``get_method(spec, runtime="onnx")``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoint import DEFAULT_WEIGHTS, WEIGHTS_DIR
from ..errors import FillgapError, did_you_mean
from ..models import model_names
from ..runtime.base import NETWORK_MAX_SIDE, FillMethod
from ..runtime.network import TorchNetwork, native_bf16
from .registry import (
    DEFAULT_RUNTIME,
    METHODS,
    RUNTIMES,
    MethodEntry,
    names,
    register_method,
    register_runtime,
    runtimes,
)

if TYPE_CHECKING:
    from ..models import InpaintModel

NETWORK_NAME = "fillgap-network"  # the shipped network alone
# What no --model gives: the network's layout with the photo's own texture. Blind judges took it
# for the untouched photo twice as often as the network alone (docs/quality.md, the eye test).
DEFAULT_NAME = "fillgap-texture"
# Names that were once registered: asked for, they get a one-line error naming the new one.
RENAMED = {"fillgap-default": NETWORK_NAME}

# The shipped networks first, then what builds on them, then the classical peers (registered on import).
register_method(
    MethodEntry(
        NETWORK_NAME,
        "shipped",
        "network (shipped weights: best hole PSNR and SSIM, smooth in wide holes)",
        weights=DEFAULT_WEIGHTS,
        card="MODEL_CARD.md",
    )
)
register_method(
    MethodEntry(
        "fillgap-smooth",
        "shipped",
        "network (shipped weights: trained without the texture loss, a blurred hole)",
        weights=WEIGHTS_DIR / "ffc-smooth.safetensors",
        card="MODEL_CARD-smooth.md",
    )
)
register_method(
    MethodEntry(
        DEFAULT_NAME, "textured", "network + texture, grain and JPEG blocks from the picture", base=NETWORK_NAME
    )
)

from .classical import ClassicalMethod  # noqa: E402  (registers the classical methods)
from .textured import TexturedMethod  # noqa: E402

CHECKPOINT_SUFFIXES = (".pt", ".safetensors", ".pth")


def classical_names() -> list[str]:
    return names("classical")


def shipped_names() -> list[str]:
    """The shipped networks' names (their weights may be missing from a trimmed install)."""
    return names("shipped")


def method_names() -> list[str]:
    """Every name ``get_method`` accepts besides paths: the registered methods, then the architectures."""
    return [*METHODS, *model_names()]


def fill_method_names() -> list[str]:
    """The names that fill as they are: every registered method."""
    return list(METHODS)


def available_names() -> list[str]:
    """The registered methods whose weights are installed (a shipped network, and what builds on it)."""

    def installed(name: str) -> bool:
        entry = METHODS[name]
        if entry.kind == "shipped":
            return entry.weights is not None and entry.weights.exists()
        return entry.base is None or installed(entry.base)

    return [n for n in METHODS if installed(n)]


def load_network(spec: str | Path | None = None, device: str = "cpu") -> InpaintModel:
    """A ready torch network from: None (the shipped network, ``fillgap-network``), a shipped name (``fillgap-smooth``)
    or a ``.safetensors`` / ``.pt`` file."""
    from ..checkpoint import load_model

    entry = METHODS.get(str(spec)) if spec is not None else None
    if entry is not None and entry.kind == "shipped":
        return load_model(entry.weights, device, shipped=True)
    if entry is not None and entry.kind == "textured":
        raise FillgapError(
            f"'{spec}' is a network plus the texture stage, not a network: use its network, '{entry.base}'"
        )
    if spec is not None and str(spec) in RENAMED:
        raise _unknown(str(spec))
    return load_model(spec, device, shipped=spec is None)


def _network(model: InpaintModel, source: str, runtime: str, name: str = "") -> FillMethod:
    if runtime not in RUNTIMES:
        raise FillgapError(
            f"unknown runtime '{runtime}'{did_you_mean(runtime, RUNTIMES)} (available: {', '.join(RUNTIMES)})"
        )
    method = RUNTIMES[runtime](model, source)
    if name:
        method.name = name
    return method


def get_method(
    spec: FillMethod | InpaintModel | str | Path | None = None,
    runtime: str = DEFAULT_RUNTIME,
    allow_untrained: bool = False,
) -> FillMethod:
    """The fill method named by ``spec`` (see the module doc); anything else is a FillgapError.
    ``allow_untrained``: accept an architecture's name (fresh, untrained weights)."""
    if isinstance(spec, FillMethod):
        return spec
    if spec is not None and not isinstance(spec, (str, Path)):
        from ..models import InpaintModel  # loads torch: a network object means torch is there anyway

        if isinstance(spec, InpaintModel):
            return _network(spec, "given", runtime)
        raise FillgapError(
            f"model must be a method name, a checkpoint path or a loaded model, got {type(spec).__name__}"
        )
    text = DEFAULT_NAME if spec is None else str(spec)
    entry = METHODS.get(text)
    if entry is not None:
        if entry.kind == "textured":
            return TexturedMethod(get_method(entry.base, runtime), text)
        if entry.kind == "classical":
            return ClassicalMethod(text, entry.fn, entry.max_side)
        return _network(load_network(text), str(entry.weights), runtime, text)
    if text in model_names() and not Path(text).exists():
        if not allow_untrained:
            raise _untrained(text)
        from ..models import create_model

        return _network(create_model(text).eval(), f"fillgap.models:{text} (untrained)", runtime, text)
    path = Path(text)
    if path.suffix.lower() == ".onnx":  # made by `fillgap export --onnx`: runs in onnxruntime whatever the runtime
        from ..runtime.onnx import OnnxNetwork

        return OnnxNetwork(path)
    if not path.exists() and path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise _unknown(text)
    return _network(load_network(path), str(path), runtime)


def _unknown(text: str) -> FillgapError:
    if text in RENAMED:
        return FillgapError(
            f"'{text}' is now called '{RENAMED[text]}' (the network alone); "
            f"the default (no model given) is {DEFAULT_NAME}"
        )
    known = fill_method_names()
    return FillgapError(
        f"unknown model '{text}'{did_you_mean(text, known)}: not a method name "
        f"({', '.join(known)}) nor an existing checkpoint file"
    )


def _untrained(text: str) -> FillgapError:
    # An architecture's fresh weights: an FFC net gives its diffusion prior, an autoencoder noise;
    # either way not what the name promises, and it used to run and exit 0.
    return FillgapError(
        f"'{text}' is a trainable architecture, not a fill method (its weights would be "
        f"untrained): train it (fillgap train --model {text}) and pass the checkpoint, or "
        f"use a method from `fillgap models` ({', '.join(fill_method_names())})"
    )


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
    """Every named method for ``fillgap models``: the installed registered methods, then the
    architectures as trainable (``trainable``)."""
    from ..models import create_model, list_models

    rows = []
    for name in available_names():
        entry = METHODS[name]
        if entry.kind == "classical":
            rows.append(MethodInfo(name, entry.summary, 0, entry.max_side, False))
            continue
        m = get_method(name)
        rows.append(MethodInfo(name, entry.summary, m.parameters_count(), m.max_side, name == DEFAULT_NAME))
    for name in list_models():
        net = create_model(name)
        rows.append(
            MethodInfo(
                name,
                "architecture",
                sum(p.numel() for p in net.parameters()),
                net.fixed_size or NETWORK_MAX_SIDE,
                False,
                trainable=True,
            )
        )
    return rows


__all__ = [
    "FillMethod",
    "ClassicalMethod",
    "TorchNetwork",
    "TexturedMethod",
    "MethodEntry",
    "METHODS",
    "register_method",
    "get_method",
    "check_spec",
    "list_methods",
    "load_network",
    "register_runtime",
    "runtimes",
    "method_names",
    "fill_method_names",
    "available_names",
    "classical_names",
    "shipped_names",
    "native_bf16",
    "NETWORK_MAX_SIDE",
    "DEFAULT_NAME",
    "DEFAULT_RUNTIME",
]
