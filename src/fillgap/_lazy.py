"""Modules loaded on first use, not at import.

torch takes about a second to import; ``fillgap --version``, ``--help``, user errors and classical
fills (OpenCV, numpy) never need it. Modules that use torch only inside functions write
``torch = lazy("torch")`` instead of ``import torch``: the name works the same everywhere
(``torch.from_numpy``, ``isinstance(x, torch.Tensor)``), and torch loads the first time one of
its attributes is read. tests/test_lazy_import.py checks which commands load it.
"""

from __future__ import annotations

import functools
import importlib


class LazyModule:
    """A stand-in for a module that imports it on the first attribute access."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_module", None)

    def __getattr__(self, attr: str):  # only called for names not found on the stand-in itself
        module = self._module
        if module is None:
            module = importlib.import_module(self._name)
            object.__setattr__(self, "_module", module)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy(name: str) -> LazyModule:
    return LazyModule(name)


def no_grad(fn):
    """``@torch.no_grad()`` for a function defined at import: torch loads when it is first called."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper
