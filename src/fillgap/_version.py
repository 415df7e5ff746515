"""The package's version, in a module that imports nothing (low layers read it too)."""

__version__ = "0.2.0"
