"""Training configuration: one pydantic model, read from YAML or TOML, overridable from flags.

Unknown keys and wrong types are refused with a one-line message naming the key.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import FillgapError
from ..masks import KINDS as MASK_KINDS


# Bounds of settings that size memory: a typo (--size 200000) is a one-line refusal, not an
# allocation failure deep in a run. model_kwargs are checked by building the network without
# memory (``models.check_model_settings``, at most ``models.MAX_PARAMETERS``).
MIN_SIZE, MAX_SIZE = 16, 4096
MAX_BATCH_SIZE = 4096
MAX_WORKERS = 256
_RANGES = {
    "size": (MIN_SIZE, MAX_SIZE, " (pixels, the side of a training patch)"),  # setting -> low, high, unit
    "batch_size": (1, MAX_BATCH_SIZE, ""),
    "workers": (0, MAX_WORKERS, ""),
}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "ffc-small"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    init: str | None = None  # start from these weights (.safetensors/.pt; "default" = shipped); not on --resume
    data: str = "bundled"  # bundled | mnist | photos | a folder path
    val_data: str | None = None  # default: the validation split of `data`
    size: int = 128  # training patch size
    scale: tuple[float, float] = (0.25, 1.0)  # crop side / photo short side (multi-scale crops)
    masks: str = "mixture"  # thin | medium | thick | box | mixture
    samples_per_epoch: int | None = None  # patches per epoch (default: one per image)
    val_samples: int = 16
    batch_size: int = 16
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps, whatever the epoch
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    lr: float = 1e-3
    lr_final: float | None = None  # cosine decay to this value over max_steps (or all epochs)
    weight_decay: float = 0.0
    losses: dict[str, float] = Field(default_factory=lambda: {"l1": 1.0})
    hole_weight: float = 6.0  # pixel losses count hole pixels this much more
    adversarial: float = 0.0  # weight of the PatchGAN loss (0 = off)
    adversarial_start: int = 0  # step at which the adversarial loss switches on
    feature_matching: float = 0.0  # weight of discriminator feature matching (with the adversarial loss)
    r1: float = 1.0
    seed: int = 0
    workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool | None = None  # bf16 autocast of the network; default: on for CUDA, off on CPU
    sync_bn: bool = True  # distributed runs: BatchNorm statistics over the global batch
    out: str = "runs/default"
    checkpoint_every: int = 200  # steps
    log_every: int = 10  # steps
    grid_samples: int = 4
    progress: bool = True

    # Values the types admit but training cannot use: refused here, with the key's name,
    # rather than as a crash (a division by zero, log of 0, an allocation of 120 GB) in a run.
    @field_validator("size", "batch_size", "workers")
    @classmethod
    def _in_range(cls, v, info):
        low, high, unit = _RANGES[info.field_name]
        if not low <= v <= high:
            raise ValueError(f"must be from {low} to {high}{unit}")
        return v

    @field_validator("val_samples", "checkpoint_every", "log_every", "grid_samples", "samples_per_epoch", "max_steps")
    @classmethod
    def _at_least_one(cls, v):
        if v is not None and v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("epochs", "adversarial_start")
    @classmethod
    def _not_negative(cls, v):
        if v < 0:
            raise ValueError("must be 0 or more")
        return v

    @field_validator("lr", "max_minutes")
    @classmethod
    def _positive_number(cls, v):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError("must be a number above 0")
        return v

    @field_validator("lr_final", "weight_decay", "hole_weight", "adversarial", "feature_matching", "r1")
    @classmethod
    def _weight(cls, v):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise ValueError("must be a number, 0 or more")
        return v

    @field_validator("losses")
    @classmethod
    def _loss_weights(cls, v):
        for name, w in v.items():
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"the weight of '{name}' must be a number, 0 or more")
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v):
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError("must be two fractions 0 < low <= high <= 1")
        return v

    @field_validator("masks")
    @classmethod
    def _mask_kind(cls, v):
        if v not in MASK_KINDS:
            raise ValueError(f"not a mask kind (choose from {', '.join(MASK_KINDS)})")
        return v


def _read(path: Path) -> dict:
    if not path.exists():
        raise FillgapError(f"config file not found: {path}")
    if not path.is_file():
        raise FillgapError(f"config is not a file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FillgapError(f"config {path} is not a text file (not UTF-8)") from None
    except OSError as exc:
        raise FillgapError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # any parser error becomes one line
        mark = getattr(exc, "problem_mark", None)  # YAML: say what and where, not its drawing of the line
        if getattr(exc, "problem", None) and mark is not None:
            reason = f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
        else:
            reason = " ".join(str(exc).split())[:200]
        raise FillgapError(f"cannot parse config {path}: {reason}") from None
    if not isinstance(data, dict):
        raise FillgapError(f"config {path} must be a mapping of keys to values")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise FillgapError(f"config {path}: key {bad[0]!r} is not a name")
    return data


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    data = _read(Path(path)) if path else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        cfg = TrainConfig(**data)
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        key = ".".join(str(p) for p in err["loc"]) or "?"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, TrainConfig.model_fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise FillgapError(f"unknown config key '{key}'{hint}{more}") from None
        msg = err["msg"].removeprefix("Value error, ")
        raise FillgapError(f"bad value for config key '{key}': {_show(err.get('input'))}: {msg}{more}") from None
    from ..models import check_model_settings, list_models

    key = "model" if cfg.model not in list_models() else "model_kwargs"
    try:
        check_model_settings(cfg.model, cfg.model_kwargs)  # no memory used: the network on the meta device
    except FillgapError as exc:
        raise FillgapError(f"bad value for config key '{key}': {_show(getattr(cfg, key))}: {exc}") from None
    return cfg
