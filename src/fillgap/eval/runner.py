"""Running a protocol: the methods (from ``fillgap.methods``' registry, through ``fillgap.fill``'s
pipeline), one case at a time with every method in turn, and ``evaluate``, the whole job."""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import FillgapError, did_you_mean
from ..masks import hole_ratio
from ..methods import DEFAULT_RUNTIME, native_bf16
from .metrics import METRICS, image_metrics
from .protocol import (
    Protocol,
    bucket_hit_rates,
    bucket_label,
    images_checksum,
    load_images,
    load_protocol,
    make_cases,
    masks_checksum,
)
from .report import check_outputs, picture_grid, write_outputs

# -- methods -----------------------------------------------------------------------------------
FillFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Method:
    name: str
    fn: FillFn
    kind: str  # classical | model
    source: str  # where it comes from (function or checkpoint path)


def peer_names(include_default: bool = True) -> list[str]:
    from ..methods import available_names, classical_names

    networks = [n for n in available_names() if n not in classical_names()]
    return classical_names() + (networks if include_default else [])


def registry_method(spec, name: str | None = None, runtime: str = DEFAULT_RUNTIME) -> Method:
    """A method of ``fillgap.methods``' registry, run through the same pipeline as ``fillgap fill``."""
    from ..fill import inpaint
    from ..methods import get_method

    method = get_method(spec, runtime)
    if runtime != DEFAULT_RUNTIME and method.kind == "network":
        name = f"{name or method.name} ({runtime})"
    kind = "classical" if method.kind == "classical" else "model"
    return Method(name or method.name, lambda image, mask: inpaint(image, mask, method), kind, method.source)


def _label(path: Path, taken: set[str]) -> str:
    # runs/<run>/last.pt says more as "<run>/last" than as "last"
    label = f"{path.parent.name}/{path.stem}" if path.stem in ("last", "best") and path.parent.name else path.stem
    base, n = label, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    return label


def build_methods(
    peers: list[str] | None = None, checkpoints: list[str | Path] = (), runtime: str = DEFAULT_RUNTIME
) -> list[Method]:
    """The classical peers (all by default), the shipped model when present, and each checkpoint."""
    from ..methods import classical_names, fill_method_names

    classical = classical_names()
    networks = [n for n in fill_method_names() if n not in classical]
    known = classical + networks
    chosen = peer_names() if peers is None else peers
    unknown = [p for p in chosen if p not in known]
    if unknown:
        raise FillgapError(
            f"unknown method '{unknown[0]}'{did_you_mean(unknown[0], known)} "
            f"(choose from {', '.join(known)}, or 'none'; "
            "checkpoints go in --model)"
        )
    methods = [registry_method(n) for n in chosen if n in classical]
    methods += [registry_method(n, runtime=runtime) for n in networks if n in chosen]
    taken = {m.name for m in methods}
    for ckpt in checkpoints:
        label = _label(Path(ckpt), taken)
        taken.add(label)
        methods.append(registry_method(Path(ckpt), label, runtime))
    if not methods:
        raise FillgapError("no methods to evaluate: name some with --methods or --model")
    return methods


def parse_method_list(values: list[str] | None) -> list[str] | None:
    """``--methods a,b --methods c`` -> [a, b, c]; ``none`` -> []; nothing -> None (all)."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return [] if names == ["none"] else names


# -- running -----------------------------------------------------------------------------------
@dataclass
class EvalRun:
    result: dict  # every number (written as JSON)
    grid: np.ndarray  # uint8 picture: grid cases across all methods
    stale: list[str] = field(default_factory=list)  # checksum warnings
    paths: dict[str, Path] = field(default_factory=dict)  # the reports, once written


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _summarise(cases: list[dict], methods: list[str], bucket_order: list[str]) -> dict:
    def group(selected: list[dict]) -> dict:
        out = {}
        for m in methods:
            rows = [c["results"][m] for c in selected]
            out[m] = {k: _mean([r[k] for r in rows]) for k in (*METRICS, "seconds")}
            out[m]["n"] = len(rows)
        return out

    buckets = [b for b in bucket_order if any(c["bucket"] == b for c in cases)]
    kinds = list(dict.fromkeys(c["kind"] for c in cases))
    return {
        "overall": group(cases),
        "by_bucket": {b: group([c for c in cases if c["bucket"] == b]) for b in buckets},
        "by_kind": {k: group([c for c in cases if c["kind"] == k]) for k in kinds},
    }


def run_protocol(
    protocol: Protocol,
    size: int,
    methods: list[Method],
    progress: bool = False,
    command: str | None = None,
    every: int = 1,
) -> EvalRun:
    """Every case (or every ``every``-th, for a quicker run on the same seeded cases) through every
    method: metrics, seconds per image, and the picture grid."""
    if size not in protocol.sizes:
        raise FillgapError(
            f"protocol {protocol.name} is defined at sizes {', '.join(map(str, protocol.sizes))}, not {size}"
        )
    images = load_images(protocol, size)
    cases = make_cases(protocol, size)
    stale = []
    checks = {
        "images": (images_checksum(images), protocol.images_sha256.get(str(size))),
        "masks": (masks_checksum(cases), protocol.masks_sha256.get(str(size))),
    }
    for what, (got, want) in checks.items():
        if want and got != want:
            stale.append(
                f"the {what} differ from protocol {protocol.name}'s checksum at {size} px: "
                "numbers are not comparable with earlier reports"
            )
    if every < 1:
        raise FillgapError(f"every must be 1 or more, got {every}")
    cases = cases[::every]  # after the checksums: those cover the whole protocol
    grid_keys = {f"{g.image}|{g.kind}|{g.bucket}" for g in protocol.grid}
    grid_out: dict[str, dict[str, np.ndarray]] = {}

    # One untimed call each first: lazy imports and first-call set-up are not what a user waits for.
    first = cases[0]
    for m in methods:
        m.fn(images[first.image], first.mask)

    from tqdm import tqdm

    rows = []
    tty = sys.stderr.isatty()  # in a log file: a progress line every 30 s, not a flood of redraws
    for case in tqdm(cases, unit="case", disable=not progress, mininterval=0.5 if tty else 30, file=sys.stderr):
        image = images[case.image]
        row = {
            "image": case.image,
            "kind": case.kind,
            "bucket": bucket_label(protocol.buckets[case.bucket]),
            "hole_ratio": hole_ratio(case.mask),
            "draw": case.draw,
            "results": {},
        }
        for m in methods:
            start = time.perf_counter()
            fill = m.fn(image, case.mask)  # fillgap.fill's pipeline: composited, known pixels kept
            seconds = time.perf_counter() - start
            row["results"][m.name] = {**image_metrics(fill, image, case.mask), "seconds": seconds}
            if case.key in grid_keys:
                grid_out.setdefault(case.key, {})[m.name] = fill
        rows.append(row)

    names = [m.name for m in methods]
    grid_cases = [c for g in protocol.grid for c in cases if c.key == f"{g.image}|{g.kind}|{g.bucket}"]
    grid = picture_grid(grid_cases, images, grid_out, names)
    result = {
        "protocol": {
            "name": protocol.name,
            "version": protocol.version,
            "size": size,
            "every": every,
            "images": protocol.images.names,
            "mask_seed": protocol.mask_seed,
            "images_sha256": checks["images"][0],
            "masks_sha256": checks["masks"][0],
            "matches_protocol": not stale,
        },
        "command": command,
        "environment": environment(),
        "methods": [{"name": m.name, "kind": m.kind, "source": m.source} for m in methods],
        "grid": [c.key for c in grid_cases],
        "summary": _summarise(rows, names, [bucket_label(b) for b in protocol.buckets]),
        "cases": rows,
    }
    return EvalRun(result, grid, stale)


def environment() -> dict:
    import skimage
    import torch
    import torchmetrics

    from .._version import __version__

    return {
        "fillgap": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "scikit-image": skimage.__version__,
        "torchmetrics": torchmetrics.__version__,
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(),
        "cpu_bf16": native_bf16("cpu"),  # the default runtime ("auto") fills in bf16 where True
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def set_threads(threads: int | None) -> int:
    """PyTorch's and OpenCV's worker threads (every method alike), by fillgap's one thread policy.

    On a shared or small machine, more threads than free cores makes timings swing tenfold;
    one thread per method gives stable, comparable seconds.
    """
    from ..runtime.threads import set_threads as apply

    return apply(threads)


def evaluate(
    protocol: str | Path = "v1",
    size: int = 256,
    checkpoints: list[str | Path] = (),
    methods: list[str] | None = None,
    out: str | Path | None = None,
    stem: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    threads: int | None = None,
    every: int = 1,
    runtime: str = DEFAULT_RUNTIME,
) -> EvalRun:
    """Load the protocol, build the methods, run, and (with ``out``) write the three reports.

    ``runtime``: how networks run (``auto``, ``torch``, ``torch-bf16``, ``onnx``, see ``fillgap.methods``);
    classical peers are unaffected."""
    set_threads(threads)
    proto = load_protocol(protocol)
    stem = stem or f"eval-{proto.name}-{size}"
    if out is not None:
        check_outputs(out, stem, overwrite)  # fail before minutes of work, not after
    # Checksum mismatches are in run.stale and in the reports: the caller decides how to show them.
    run = run_protocol(
        proto, size, build_methods(methods, checkpoints, runtime), progress=progress, command=command, every=every
    )
    if out is not None:
        run.paths = write_outputs(run, out, stem, overwrite)
    return run


def _print_hit_rates() -> None:
    proto = load_protocol("v1")
    for size in proto.sizes:
        rates = bucket_hit_rates(tuple(proto.cells), proto.buckets, size)
        print(
            f"{size} px: share of 2,000 masks per hole-ratio bucket "
            f"({', '.join(bucket_label(b) for b in proto.buckets)})"
        )
        for kind, r in rates.items():
            print(f"  {kind:7s} " + "  ".join(f"{x * 100:5.2f} %" for x in r))


if __name__ == "__main__":
    _print_hit_rates()
