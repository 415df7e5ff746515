"""ONNX Runtime path: export a network to an ``.onnx`` file, run it with onnxruntime.

``export_onnx(model, path)`` writes a self-contained ONNX graph (weights inside) with
dynamic height and width (multiples of the network's ``size_multiple``, at least two of
them), inputs ``image`` (N x C x H x W float32 in [0, 1]) and ``mask`` (N x 1 x H x W,
> 0 = hole), output ``filled`` (N x C x H x W). The Fourier units export as DFT matrix
products (see ``fillgap.models.ffc.rfft2_matmul``). fillgap's settings ride along as
metadata, so ``OnnxSession(path)`` needs nothing but the file.

``OnnxSession``: one network in onnxruntime (CUDA execution provider when onnxruntime has
it, else CPU), with its thread count. ``OnnxNetwork``: the ``onnx`` runtime of
``fillgap.methods`` (``--runtime onnx``; ``--model X.onnx``); a torch checkpoint is exported
once into a cache folder (``$FILLGAP_CACHE/onnx``, default ``~/.cache/fillgap/onnx``) and
the file is reused after that.

The cache: each export ``NAME.onnx`` has its SHA-256 beside it (``NAME.onnx.sha256``), checked
before every use; an export that no longer matches it (damaged on disk) or has none (an export
cut short) is exported again, with a one-line notice on stderr. Each session is built from
the bytes that were checked. The cache holds at most ``CACHE_MAX_BYTES`` (512 MB): after a new
export, the least recently used exports (file times, set at every use) are deleted until it
fits; the one just made always stays. Exports are made under a lock of the cache folder, so
processes starting together export once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FillgapError
from ..fsutil import atomic_write_text, folder_lock, sha256_file
from .base import NETWORK_MAX_SIDE
from .network import TorchNetwork
from ..models import InpaintModel

FORMAT = "fillgap-onnx-1"  # bump when inputs, outputs or metadata change meaning
CACHE_MAX_BYTES = 512 * 1024 * 1024  # the export cache's cap: least recently used exports go first
CACHE_LOCK = ".fillgap-onnx-lock"
# Seconds `fillgap export --onnx x.onnx` took for the shipped model (ffc-small) on a 2-core CPU
# (docs/onnx.md): said before an export starts, as torch's exporter prints nothing meanwhile.
EXPORT_SECONDS_HINT = 80


def export_notice(what: str, why: str = "") -> str:
    """The line printed before an export starts (``why``: what it is for, e.g. the cache)."""
    return (
        f"fillgap: exporting {what} to ONNX{why}: about {EXPORT_SECONDS_HINT} s for the shipped model on "
        "a 2-core CPU, longer for bigger networks"
    )


@contextlib.contextmanager
def _elapsed(label: str, stream=None):
    """On a terminal, ``label`` and the seconds spent so far, redrawn every second: the exporter's
    steps say nothing for a minute or more. Elsewhere (a log) nothing."""
    stream = stream if stream is not None else sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        yield
        return
    start, stop = time.monotonic(), threading.Event()

    def draw(end: str = "") -> None:
        stream.write(f"\r{label} {time.monotonic() - start:.0f} s{end}")
        stream.flush()

    def tick() -> None:
        while not stop.wait(1.0):
            draw()

    ticker = threading.Thread(target=tick, name="fillgap-export-progress", daemon=True)
    draw()
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        draw("\n")


@dataclass
class ExportReport:
    path: Path
    bytes: int
    max_abs_diff: float  # ONNX Runtime vs torch on a check input of another size than the traced one
    check_size: tuple[int, int]


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress lines and warns about optional packages: keep the CLI's output clean."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _metadata(model: InpaintModel, source: str) -> dict[str, str]:
    from .._version import __version__

    return {
        "fillgap_format": FORMAT,
        "fillgap_version": __version__,
        "torch_version": torch.__version__,
        "model_name": model.registry_name or type(model).__name__,
        "model_kwargs": json.dumps(model.registry_kwargs, default=str),
        "source": source,
        "channels": str(model.channels),
        "size_multiple": str(model.size_multiple),
        "fixed_size": str(model.fixed_size or 0),
    }


def export_onnx(
    model: InpaintModel,
    path: str | Path,
    overwrite: bool = False,
    source: str = "",
    check: bool = True,
    progress: bool = False,
) -> ExportReport:
    """Write ``model`` as ONNX to ``path`` (atomically); with ``check``, compare ONNX Runtime with torch.
    ``progress``: each step's seconds so far on stderr, when it is a terminal."""
    step = _elapsed if progress else (lambda label: contextlib.nullcontext())
    import onnx

    path = Path(path)
    if path.exists() and not overwrite:
        raise FillgapError(f"{path} already exists (use --overwrite to replace it)")
    if path.parent and not path.parent.exists():
        raise FillgapError(f"output folder does not exist: {path.parent}")
    # the form fills run (batch norms folded, the head as column sums): the same function, and
    # onnxruntime ran it 8 % faster at 512 px than the training form
    model = model.for_inference()
    k, fixed = model.size_multiple, model.fixed_size
    # Traced at 16 blocks square; checked at another, non-square size below.
    side = fixed or 16 * k
    gen = torch.Generator().manual_seed(0)
    # A batch of 2: the exporter would fix a batch dimension of size 1 in the graph.
    x = torch.rand(2, model.channels, side, side, generator=gen)
    m = (torch.rand(2, 1, side, side, generator=gen) > 0.7).float()
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {"image": {0: batch}, "mask": {0: batch}}
    if not fixed:
        # Multiples of k (the net's stride), at least 2k: what fillgap's pipeline feeds.
        bh, bw = torch.export.Dim("h_blocks", min=2, max=8192), torch.export.Dim("w_blocks", min=2, max=8192)
        dynamic = {"image": {0: batch, 2: k * bh, 3: k * bw}, "mask": {0: batch, 2: k * bh, 3: k * bw}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            with step("fillgap: tracing and converting the network..."), _quiet(), torch.no_grad():
                torch.onnx.export(
                    model,
                    (x, m),
                    str(tmp),
                    dynamo=True,
                    input_names=["image", "mask"],
                    output_names=["filled"],
                    dynamic_shapes=dynamic,
                    external_data=False,
                )
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; the first line says which op
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise FillgapError(
                f"cannot export {model.registry_name or type(model).__name__} to ONNX ({type(exc).__name__}: {first})"
            ) from None
        proto = onnx.load(str(tmp))
        for key, value in _metadata(model, source).items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
        report = ExportReport(path, tmp.stat().st_size, 0.0, (side, side))
        if check:
            ch, cw = (side, side) if fixed else (side + 3 * k, side - 5 * k)
            xc = torch.rand(1, model.channels, ch, cw, generator=gen)
            mc = (torch.rand(1, 1, ch, cw, generator=gen) > 0.6).float()
            with step("fillgap: checking onnxruntime against torch..."):
                with torch.no_grad():
                    ref = model(xc, mc)
                got = OnnxSession(tmp, threads=1).run(xc, mc)
            report.max_abs_diff, report.check_size = float((got - ref).abs().max()), (ch, cw)
            if not report.max_abs_diff < 1e-3:
                raise FillgapError(
                    f"the exported graph does not match the torch network "
                    f"(max difference {report.max_abs_diff:.3g} at {cw}x{ch})"
                )
        if path.exists() and not overwrite:  # appeared while we exported
            raise FillgapError(f"{path} already exists (use --overwrite to replace it)")
        os.replace(tmp, path)
        return report
    finally:
        tmp.unlink(missing_ok=True)


def cache_dir() -> Path:
    root = os.environ.get("FILLGAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fillgap"
    )
    return Path(root) / "onnx"


def _file_digest(path: Path) -> str:
    return sha256_file(path)[:20]


def providers() -> list[str]:
    """CUDA when this onnxruntime build has it (onnxruntime-gpu), always CPU as the fallback."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class OnnxSession:
    """An exported fillgap network in onnxruntime: ``run(image, mask) -> filled`` on torch tensors."""

    def __init__(self, path: str | Path, threads: int | None = None, sha256: str | None = None):
        """``sha256``: the file's expected digest (a cached export): the session is built from
        the bytes checked against it, so a file damaged since its last check never runs."""
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FillgapError(f"ONNX file not found: {self.path}")
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise FillgapError(f"cannot read ONNX file {self.path}: {exc.strerror or exc}") from None
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise FillgapError(
                f"the cached ONNX export {self.path} does not match its checksum any more "
                "(damaged on disk?): run again to export it anew"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Waiting workers sleep rather than spin: spinning steals the core that another program
        # (or our own next thread) needs, the same reason fillgap sets OMP_WAIT_POLICY for torch.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(data, options, providers=providers())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for bad files
            raise FillgapError(f"unreadable ONNX file {self.path}: {str(exc).strip().splitlines()[0][:200]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("fillgap_format") != FORMAT:
            raise FillgapError(f"{self.path} is not a fillgap ONNX export (made by `fillgap export --onnx`)")
        _check_finite_weights(data, self.path)
        self.threads = threads
        self.metadata = meta
        self.name = meta.get("model_name", self.path.stem)
        self.channels = int(meta["channels"])
        self.size_multiple = int(meta["size_multiple"])
        self.fixed_size = int(meta["fixed_size"]) or None
        self.on_cuda = self.session.get_providers()[0] == "CUDAExecutionProvider"

    def run(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feed = {
            "image": np.ascontiguousarray(image.detach().cpu().float().numpy()),
            "mask": np.ascontiguousarray(mask.detach().cpu().float().numpy()),
        }
        return torch.from_numpy(self.session.run(["filled"], feed)[0])


def _check_finite_weights(data: bytes, path: Path) -> None:
    """Refuse an ONNX graph whose weights hold NaN or infinity, as ``checkpoint.check_finite``
    does for torch files. A 0-d initializer may be -inf: the exporter's constant of a masked
    softmax (attention), not a weight."""
    import onnx
    from onnx import numpy_helper

    for t in onnx.load_from_string(data).graph.initializer:
        array = numpy_helper.to_array(t)
        if array.dtype.kind not in "fc" or np.isfinite(array).all():
            continue
        if np.isnan(array).any():
            bad = "NaN"
        elif array.ndim == 0:
            continue
        else:
            bad = "infinity"
        raise FillgapError(
            f"ONNX file {path} has non-finite weights: '{t.name}' holds {bad} (a training run that diverged?)"
        )


@functools.lru_cache(maxsize=1)
def _models_code_digest() -> str:
    """Digest of the networks' source files (``fillgap/models/*.py``)."""
    from .. import models

    h = hashlib.sha256()
    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:8]


def exported_path(model: InpaintModel, source: str | Path | None) -> Path:
    """The ONNX file of a torch network: exported once per weights into ``cache_dir()``, then reused."""
    from .._version import __version__
    from ..checkpoint import DEFAULT_WEIGHTS

    src = Path(source) if source else DEFAULT_WEIGHTS
    if src.is_file():
        key = _file_digest(src)
    else:  # a registry name or a model built in memory: the weights themselves are the key
        h = hashlib.sha256(json.dumps([model.registry_name, model.registry_kwargs], default=str).encode())
        for t in model.state_dict().values():
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        key = h.hexdigest()[:20]
    key += "-" + _models_code_digest()  # an edit of the network's code (e.g. the prior) is a new graph
    stem = "".join(
        ch if ch.isalnum() or ch in "-_." else "_"
        for ch in (src.stem if src.is_file() else model.registry_name or "model")
    )
    cached = cache_dir() / f"{stem}-{key}-{FORMAT}-fillgap{__version__}-torch{torch.__version__.split('+')[0]}.onnx"
    if _check_cached(cached) != "ok":
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FillgapError(f"cannot create the ONNX cache {cached.parent}: {exc.strerror or exc}") from None
        with folder_lock(cached.parent, "ONNX export", CACHE_LOCK, wait=True):
            state = _check_cached(cached)  # another process may have exported it meanwhile
            if state != "ok":
                if state != "missing":
                    print(
                        f"fillgap: warning: the cached ONNX export {cached} {state}: exporting it again",
                        file=sys.stderr,
                        flush=True,
                    )
                else:  # the first --runtime onnx fill of these weights waits for the export
                    print(
                        export_notice(src.name if src.is_file() else stem, f" once (cached in {cached.parent})"),
                        file=sys.stderr,
                        flush=True,
                    )
                _sidecar(cached).unlink(missing_ok=True)  # no stale checksum beside a new file
                export_onnx(model, cached, overwrite=True, source=str(src), progress=True)
                atomic_write_text(_sidecar(cached), sha256_file(cached) + "\n")
                _evict(cached.parent, keep=cached)
    try:
        os.utime(cached)  # its time is its last use: the cache evicts the least recently used
    except OSError:
        pass  # a read-only cache still works, it only forgets the order
    return cached


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def stored_sha256(path: Path) -> str | None:
    """The digest stored beside a cached export, or None."""
    try:
        return _sidecar(path).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _check_cached(path: Path) -> str:
    """ "ok", "missing", or why a cached export cannot be used as it is."""
    if not path.exists():
        return "missing"
    expected = stored_sha256(path)
    if expected is None:
        return "has no checksum (an export cut short?)"
    try:
        if sha256_file(path) == expected:
            return "ok"
    except OSError:
        pass
    return "does not match its checksum (damaged on disk?)"


def _evict(folder: Path, keep: Path) -> None:
    """Delete the least recently used exports until the cache holds at most CACHE_MAX_BYTES
    (``keep``, the export just made, stays whatever its size). Call it holding the cache's lock."""
    entries = []
    for path in folder.glob("*.onnx"):
        try:
            st = path.stat()
            entries.append(
                (st.st_mtime_ns, path, st.st_size + (_sidecar(path).stat().st_size if _sidecar(path).exists() else 0))
            )
        except OSError:
            continue
    total = sum(size for _, _, size in entries)
    for _, path, size in sorted(entries, key=lambda e: e[0]):
        if total <= CACHE_MAX_BYTES:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)
        total -= size


class OnnxNetwork(TorchNetwork):
    """A network run by onnxruntime: ``fillgap.methods``' ``onnx`` runtime and ``--model X.onnx``.

    The pipeline's padding and scaling are TorchNetwork's; only the network call differs. One
    session per thread count (onnxruntime fixes it per session): the count is torch's current
    one, which ``fillgap.runtime.threads.set_threads`` sets for every entry point.
    """

    def __init__(
        self,
        path: str | Path,
        name: str = "",
        source: str = "",
        model: InpaintModel | None = None,
        sha256: str | None = None,
    ):
        self.path = Path(path)
        self.sha256 = sha256  # a cached export: every session is built from bytes checked against it
        self._sessions: dict[int, OnnxSession] = {}
        self._lock = threading.Lock()
        first = self._session()
        self.model = model  # the torch network it came from, if any (parameter count)
        self.name = name or first.name
        self.source = source or str(self.path)
        self.channels, self.fixed_size, self.size_multiple = first.channels, first.fixed_size, first.size_multiple
        self.max_side = NETWORK_MAX_SIDE
        self.providers = first.session.get_providers()

    @classmethod
    def from_model(cls, model: InpaintModel, source: str) -> "OnnxNetwork":
        """The ``onnx`` runtime's factory: export once into the cache, then run the file."""
        path = exported_path(model, source)
        return cls(path, source=source, model=model, sha256=stored_sha256(path))

    def _session(self) -> OnnxSession:
        n = torch.get_num_threads()
        with self._lock:
            if n not in self._sessions:
                self._sessions[n] = OnnxSession(self.path, threads=n, sha256=self.sha256)
            return self._sessions[n]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # inputs go in as NumPy; a CUDA provider copies them itself

    def _forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self._session().run(x, m)

    def parameters_count(self) -> int:
        if self.model is not None:
            return sum(p.numel() for p in self.model.parameters())
        import onnx

        graph = onnx.load(str(self.path), load_external_data=False).graph
        return sum(int(np.prod(t.dims)) for t in graph.initializer)
