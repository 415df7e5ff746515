"""Saving and loading networks.

Two formats:
- training checkpoints (``.pt``): model + optimiser + step/epoch + config, for ``--resume``;
- released weights (``.safetensors``): model weights only, with the registry name and
  settings in the file's metadata, so ``load_model(path)`` rebuilds the right network.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import torch

from .errors import FillgapError
from .models import InpaintModel, create_model

DEFAULT_WEIGHTS = Path(__file__).with_name("weights") / "ffc-default.safetensors"


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_checkpoint(path: str | Path, model: InpaintModel, **state) -> None:
    """Training checkpoint, written atomically (a crash never leaves a half file)."""
    payload = {"model_name": model.registry_name, "model_kwargs": model.registry_kwargs,
               "model": model.state_dict(), **state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    _atomic_write(Path(path), buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FillgapError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FillgapError(f"unreadable checkpoint {path} (truncated or not a fillgap checkpoint): "
                           f"{type(exc).__name__}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise FillgapError(f"not a fillgap training checkpoint: {path}")
    return ckpt


def export_weights(path: str | Path, model: InpaintModel, half: bool = False, **metadata) -> None:
    """Weights for release: safetensors, optionally fp16, with how-to-rebuild metadata."""
    from safetensors.torch import save

    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
               for k, v in model.state_dict().items()}
    meta = {"model_name": model.registry_name, "model_kwargs": json.dumps(model.registry_kwargs),
            **{k: str(v) for k, v in metadata.items()}}
    _atomic_write(Path(path), save(tensors, metadata=meta))


def _build(name: str, kwargs: dict, state: dict, source: Path) -> InpaintModel:
    model = create_model(name, **kwargs)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise FillgapError(f"checkpoint {source} does not match model '{name}': "
                           f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from None
    return model.eval()


def load_model(spec: str | Path | None = None, device: str | torch.device = "cpu") -> InpaintModel:
    """A ready network from: None (the shipped default), a ``.safetensors`` or ``.pt`` file."""
    path = Path(spec) if spec else DEFAULT_WEIGHTS
    if not path.exists():
        if spec is None:
            raise FillgapError(f"the default weights are missing from the package ({path})")
        raise FillgapError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                state = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as exc:
            raise FillgapError(f"unreadable weights file {path}: {type(exc).__name__}") from None
        if "model_name" not in meta:
            raise FillgapError(f"weights file {path} does not say which model it is (no fillgap metadata)")
        model = _build(meta["model_name"], json.loads(meta.get("model_kwargs", "{}")), state, path)
    else:
        ckpt = read_checkpoint(path)
        model = _build(ckpt["model_name"], ckpt.get("model_kwargs", {}), ckpt["model"], path)
    return model.to(device)


def weights_metadata(path: str | Path = DEFAULT_WEIGHTS) -> dict[str, str]:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})
