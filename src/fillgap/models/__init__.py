"""One registry for every network: ``create_model("ffc-small")``, ``list_models()``.

Each model file registers its factories with ``@register_model``; names are what the
CLI and configs use (``--model seed-color-ae``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import FillgapError, did_you_mean

if TYPE_CHECKING:
    from .base import InpaintModel

_REGISTRY: dict[str, Callable[..., InpaintModel]] = {}
# The names the model files register, known without importing them (they load torch): the CLI's
# errors and suggestions need them at start-up. tests/test_models.py checks them against the registry.
NAMES = ("ffc-base", "ffc-small", "ffc-tiny", "seed-color-ae", "seed-mnist-ae")


def register_model(name: str):
    def wrap(factory: Callable[..., InpaintModel]):
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def _load() -> None:
    """Import the model files, which fill the registry (and load torch)."""
    from . import ffc, seed  # noqa: F401


def list_models() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def model_names() -> list[str]:
    """``list_models()`` without loading the model files: ``NAMES`` and whatever registered since."""
    return sorted({*NAMES, *_REGISTRY})


# The largest network fillgap builds: about 1 GB of float32 weights (ffc-base has 27 M). A
# setting beyond (a width of 100000: 91 billion) is a typo; it used to end in the allocator.
MAX_PARAMETERS = 250_000_000


def check_model_settings(name: str, kwargs: dict) -> int:
    """The parameter count of ``name`` built with ``kwargs``, built on the meta device (no
    memory): unknown names, settings the network refuses and networks above ``MAX_PARAMETERS``
    are one FillgapError, before anything is allocated."""
    import torch

    _load()
    if name not in _REGISTRY:
        raise FillgapError(
            f"unknown model '{name}'{did_you_mean(name, list_models())} (available: {', '.join(list_models())})"
        )
    try:
        with torch.device("meta"):
            model = _REGISTRY[name](**kwargs)
    except Exception as exc:  # noqa: BLE001 - a layer refusing a setting raises anything
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FillgapError(f"bad settings for model '{name}': {reason}") from None
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise FillgapError(
            f"model '{name}' would have {count:,} parameters with these settings, the limit is {MAX_PARAMETERS:,}"
        )
    return count


def create_model(name: str, **kwargs) -> InpaintModel:
    check_model_settings(name, kwargs)
    try:
        model = _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise FillgapError(f"bad settings for model '{name}': {exc}") from None
    model.registry_name, model.registry_kwargs = name, dict(kwargs)
    return model


def __getattr__(name: str):
    if name == "InpaintModel":  # the base class loads torch: on first use
        from .base import InpaintModel

        return InpaintModel
    raise AttributeError(f"module 'fillgap.models' has no attribute {name!r}")


__all__ = [
    "InpaintModel",
    "register_model",
    "create_model",
    "list_models",
    "check_model_settings",
    "model_names",
    "NAMES",
]
