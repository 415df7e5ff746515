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


def create_model(name: str, **kwargs) -> InpaintModel:
    if name not in _REGISTRY:
        raise FillgapError(f"unknown model '{name}' (available: {', '.join(list_models())})")
    try:
        model = _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise FillgapError(f"bad settings for model '{name}': {exc}") from None
    model.registry_name, model.registry_kwargs = name, dict(kwargs)
    return model


# Importing the model files fills the registry.
from . import seed, ffc  # noqa: E402,F401

__all__ = ["InpaintModel", "register_model", "create_model", "list_models"]
