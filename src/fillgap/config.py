"""Training configuration: one pydantic model, read from YAML or TOML, overridable from flags.

Unknown keys and wrong types are refused with a one-line message naming the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import FillgapError


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "ffc-small"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    data: str = "bundled"             # bundled | mnist | photos | a folder path
    val_data: str | None = None       # default: the validation split of `data`
    size: int = 128                   # training patch size
    scale: tuple[float, float] = (0.25, 1.0)  # crop side / photo short side (multi-scale crops)
    masks: str = "mixture"            # thin | medium | thick | box | mixture
    samples_per_epoch: int | None = None  # patches per epoch (default: one per image)
    val_samples: int = 16
    batch_size: int = 16
    epochs: int = 10
    max_steps: int | None = None      # stop after this many optimiser steps, whatever the epoch
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    lr: float = 1e-3
    lr_final: float | None = None     # cosine decay to this value over max_steps (or all epochs)
    weight_decay: float = 0.0
    losses: dict[str, float] = Field(default_factory=lambda: {"l1": 1.0})
    hole_weight: float = 6.0          # pixel losses count hole pixels this much more
    adversarial: float = 0.0          # weight of the PatchGAN loss (0 = off)
    adversarial_start: int = 0        # step at which the adversarial loss switches on
    r1: float = 1.0
    seed: int = 0
    workers: int = 0
    device: str = "auto"              # auto | cpu | cuda
    out: str = "runs/default"
    checkpoint_every: int = 200       # steps
    log_every: int = 10               # steps
    grid_samples: int = 4
    progress: bool = True


def _read(path: Path) -> dict:
    if not path.exists():
        raise FillgapError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text) or {}
    except Exception as exc:  # any parser error becomes one line
        raise FillgapError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FillgapError(f"config {path} must be a mapping of keys to values")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    data = _read(Path(path)) if path else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return TrainConfig(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "?"
        if err["type"] == "extra_forbidden":
            raise FillgapError(f"unknown config key '{key}'") from None
        raise FillgapError(f"bad value for config key '{key}': {err['msg']}") from None
