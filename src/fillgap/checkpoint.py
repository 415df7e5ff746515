"""Saving and loading networks.

Two formats:
- training checkpoints (``.pt``): model + optimiser + step/epoch + config, for ``--resume``;
- released weights (``.safetensors``): model weights only, with the registry name and
  settings in the file's metadata, so ``load_model(path)`` rebuilds the right network.

Both carry a SHA-256 of their tensors (``.pt``: one per entry, under ``checksums``;
``.safetensors``: ``tensor_sha256`` in the metadata), checked at every load: a flipped byte
inside a weight is refused instead of trained on. Files written before the checksums load
unchecked. Every load also refuses weights that are NaN or infinite (a checksum only says the
file is as written: a diverged run writes NaN faithfully, and NaN fills holes black). Both are
written through ``fillgap.fsutil.atomic_write``.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ._lazy import lazy
from .errors import FillgapError
from .fsutil import atomic_write
from .models import create_model, list_models

if TYPE_CHECKING:
    from .models import InpaintModel

torch = lazy("torch")  # loaded when a checkpoint is

# The package's weights folder and its default network (the shipped ones are registered with their
# cards in ``fillgap.methods``).
WEIGHTS_DIR = Path(__file__).with_name("weights")
DEFAULT_WEIGHTS = WEIGHTS_DIR / "ffc-default.safetensors"
CHECKSUM_KEY = "tensor_sha256"  # in a .safetensors file's metadata
CHECKSUMS = "checksums"  # in a .pt checkpoint: entry name -> SHA-256 of its tensors


def _tensors(obj, prefix: str = ""):
    """(name, tensor) for every tensor inside nested dicts, lists and tuples, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}")


def tensor_checksum(obj) -> str | None:
    """SHA-256 over the names, dtypes, shapes and bytes of the tensors in ``obj`` (None: no tensors)."""
    digest, found = hashlib.sha256(), False
    for name, t in _tensors(obj):
        found = True
        t = t.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{t.numel()}|".encode())
        digest.update(memoryview(t.view(torch.uint8).numpy()))
    return digest.hexdigest() if found else None


def save_checkpoint(path: str | Path, model: InpaintModel, **state) -> None:
    """Training checkpoint with its tensors' checksums, written atomically (whole or not at all)."""
    payload = {
        "model_name": model.registry_name,
        "model_kwargs": model.registry_kwargs,
        "model": model.state_dict(),
        **state,
    }
    payload[CHECKSUMS] = {k: c for k, v in payload.items() if (c := tensor_checksum(v)) is not None}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(Path(path), buffer.getbuffer(), overwrite=True)


def _verify_checkpoint(ckpt: dict, path: Path) -> None:
    sums = ckpt.get(CHECKSUMS)
    if sums is None:  # written before checksums existed
        return
    if not isinstance(sums, dict):
        raise FillgapError(f"checkpoint {path} is damaged: its '{CHECKSUMS}' entry is not a table")
    for key, expected in sums.items():
        if key not in ckpt:
            raise FillgapError(f"checkpoint {path} is damaged: its '{key}' entry is missing")
        if tensor_checksum(ckpt[key]) != expected:
            raise FillgapError(
                f"checkpoint {path} is corrupt: the tensors of its '{key}' entry do not match "
                "the checksum stored with them (damaged on disk or in a copy)"
            )


def check_finite(state: dict, source, what: str = "checkpoint") -> None:
    """Refuse a table of weights that holds NaN or infinity, naming ``source`` and the first bad tensor."""
    for name, t in state.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "infinity"
            raise FillgapError(
                f"{what} {source} has non-finite weights: '{name}' holds {bad} (a training run that diverged?)"
            )


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise FillgapError(f"{what} not found: {path}")
    if not path.is_file():
        raise FillgapError(f"{what} is not a file: {path}")
    if path.stat().st_size == 0:
        raise FillgapError(f"empty {what} (0 bytes): {path}")


def read_checkpoint(path: str | Path) -> dict:
    """A training checkpoint's contents; any damaged or foreign file is one FillgapError."""
    path = Path(path)
    _check_file(path, "checkpoint")
    try:
        # weights_only: a checkpoint is data, never code to run (a pickle could run anything).
        # torch warns about foreign pickles before refusing them: the refusal says it in one line.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        for w in caught:  # a file that loads: its warnings are passed on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    except Exception as exc:  # noqa: BLE001 - truncated zip, foreign pickle, not a torch file at all
        hint = " (a .safetensors file? keep its suffix)" if _looks_like_safetensors(path) else ""
        raise FillgapError(
            f"unreadable checkpoint {path} (truncated or not a fillgap checkpoint): {type(exc).__name__}{hint}"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise FillgapError(f"not a fillgap training checkpoint: {path} (no model name and weights in it)")
    if not isinstance(ckpt["model_name"], str) or not isinstance(ckpt.get("model_kwargs", {}), dict):
        raise FillgapError(f"not a fillgap training checkpoint: {path} (bad model name or settings)")
    if not isinstance(ckpt["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise FillgapError(f"not a fillgap training checkpoint: {path} (its weights are not a table of tensors)")
    _verify_checkpoint(ckpt, path)
    check_finite(ckpt["model"], path)
    return ckpt


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte header length and a JSON header."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def export_weights(path: str | Path, model: InpaintModel, half: bool = False, **metadata) -> None:
    """Weights for release: safetensors, optionally fp16, with how-to-rebuild metadata."""
    from safetensors.torch import save

    tensors = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()
    }
    meta = {
        "model_name": model.registry_name,
        "model_kwargs": json.dumps(model.registry_kwargs),
        **{k: str(v) for k, v in metadata.items()},
        CHECKSUM_KEY: tensor_checksum(tensors),
    }
    atomic_write(Path(path), save(tensors, metadata=meta), overwrite=True)


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def _build(name: str, kwargs: dict, state: dict, source: Path) -> InpaintModel:
    """The registered network ``name`` with ``state`` loaded; a mismatch is named in one line."""
    if not all(isinstance(k, str) for k in kwargs):
        raise FillgapError(f"checkpoint {source} has damaged model settings (non-text keys)")
    if name not in list_models():
        raise FillgapError(
            f"checkpoint {source} holds model '{name}', which this fillgap does not know "
            f"(available: {', '.join(list_models())})"
        )
    try:
        model = create_model(name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a layer refusing a setting raises anything
        reason = str(exc).removeprefix(f"bad settings for model '{name}': ").strip().splitlines()
        raise FillgapError(
            f"checkpoint {source}: model '{name}' cannot be built with its settings "
            f"{json.dumps(kwargs, default=str)[:120]} "
            f"({reason[0][:120] if reason else type(exc).__name__})"
        ) from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        # The first few problems, not torch's list of every key: the message stays one line.
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} tensor(s) of another shape, e.g. {k}: {_shape(state[k])} in the file, "
                f"{_shape(expected[k])} in the model"
            )
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise FillgapError(
            f"checkpoint {source} does not match model '{name}' (another architecture or settings?): {'; '.join(parts)}"
        )
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise FillgapError(
            f"checkpoint {source} does not match model '{name}': {str(exc).strip().splitlines()[-1][:200]}"
        ) from None
    return model.eval()


def load_model(
    spec: str | Path | None = None, device: str | torch.device = "cpu", shipped: bool = False
) -> InpaintModel:
    """A ready network from a ``.safetensors`` or ``.pt`` file (None: the shipped network,
    ``fillgap-network``, the layout under the default method).
    ``shipped``: the file is one the package ships (its absence is a broken install). Shipped names
    (``fillgap-smooth``) are resolved by ``fillgap.methods.load_network`` (``fillgap.load_model``)."""
    path = Path(spec) if spec else DEFAULT_WEIGHTS
    if (shipped or spec is None) and not path.exists():
        raise FillgapError(f"the shipped weights are missing from the package ({path})")
    if path.suffix == ".safetensors":
        _check_file(path, "weights file")
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                state = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as exc:  # noqa: BLE001 - truncated or not safetensors at all
            raise FillgapError(
                f"unreadable weights file {path} (truncated or not safetensors): {type(exc).__name__}"
            ) from None
        expected = meta.get(CHECKSUM_KEY)
        if expected is not None and tensor_checksum(state) != expected:
            raise FillgapError(
                f"weights file {path} is corrupt: its tensors do not match the checksum in its "
                "metadata (damaged on disk or in a copy)"
            )
        check_finite(state, path, "weights file")
        if "model_name" not in meta:
            raise FillgapError(f"weights file {path} does not say which model it is (no fillgap metadata)")
        try:
            kwargs = json.loads(meta.get("model_kwargs", "{}"))
        except ValueError:
            kwargs = None
        if not isinstance(kwargs, dict):
            raise FillgapError(f"weights file {path} has damaged fillgap metadata (model_kwargs is not a JSON object)")
        model = _build(meta["model_name"], kwargs, state, path)
    else:
        ckpt = read_checkpoint(path)
        model = _build(ckpt["model_name"], ckpt.get("model_kwargs", {}), ckpt["model"], path)
    return model.to(device)


def weights_metadata(path: str | Path = DEFAULT_WEIGHTS) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})
