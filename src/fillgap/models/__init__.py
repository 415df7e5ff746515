"""One registry for every network: ``create_model("ffc-small")``, ``list_models()``.

Each model file registers its factories with ``@register_model``; names are what the
CLI and configs use (``--model seed-color-ae``).
"""
from __future__ import annotations

from typing import Callable

from ..errors import FillgapError
from .base import InpaintModel

_REGISTRY: dict[str, Callable[..., InpaintModel]] = {}


def register_model(name: str):
    def wrap(factory: Callable[..., InpaintModel]):
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = factory
        return factory
    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


# The largest network fillgap builds: about 1 GB of float32 weights (ffc-base has 27 M). A
# setting beyond (a width of 100000: 91 billion) is a typo; it used to end in the allocator.
MAX_PARAMETERS = 250_000_000


def check_model_settings(name: str, kwargs: dict) -> int:
    """The parameter count of ``name`` built with ``kwargs``, built on the meta device (no
    memory): unknown names, settings the network refuses and networks above ``MAX_PARAMETERS``
    are one FillgapError, before anything is allocated."""
    import torch

    if name not in _REGISTRY:
        raise FillgapError(f"unknown model '{name}' (available: {', '.join(list_models())})")
    try:
        with torch.device("meta"):
            model = _REGISTRY[name](**kwargs)
    except Exception as exc:  # noqa: BLE001 - a layer refusing a setting raises anything
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FillgapError(f"bad settings for model '{name}': {reason}") from None
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise FillgapError(f"model '{name}' would have {count:,} parameters with these settings, "
                           f"the limit is {MAX_PARAMETERS:,}")
    return count


def create_model(name: str, **kwargs) -> InpaintModel:
    check_model_settings(name, kwargs)
    try:
        model = _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise FillgapError(f"bad settings for model '{name}': {exc}") from None
    model.registry_name, model.registry_kwargs = name, dict(kwargs)
    return model


# Importing the model files fills the registry.
from . import seed, ffc  # noqa: E402,F401

__all__ = ["InpaintModel", "register_model", "create_model", "list_models", "check_model_settings"]
