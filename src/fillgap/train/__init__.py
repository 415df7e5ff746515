"""Training: the settings (``config``), the losses, the ``Trainer`` and its loop (``trainer``), the
multi-process launcher (``distributed``) and the loss curves (``curves``). ``fillgap train`` calls
``train``."""

from .trainer import EpochSampler, Trainer, train

__all__ = ["EpochSampler", "Trainer", "train"]
