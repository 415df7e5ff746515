"""The evaluation protocol: fixed pictures, fixed seeded holes, every method through the same cases.

A protocol is a versioned JSON file in ``fillgap/protocols/`` (``v2``: every photo of the
``test`` split of photos.csv, written by ``python -m fillgap.make_protocol v2``; ``v1``: the first
8 of them, kept for continuity, same masks per photo; ``bundled``: the 3 held-out photos shipped
in the package, for CI and the demo). It fixes:

- the pictures and how each becomes a ``size`` x ``size`` square: short side resized to
  ``size`` (``cv2.INTER_AREA``; ``INTER_CUBIC`` when the photo is smaller), centre crop;
- the holes: for every (picture, kind, hole-ratio bucket) cell, masks are drawn from the
  seeded stream ``make_rng(mask_seed, crc32("picture|kind|bucket"), draw)`` for draw = 0, 1, ...
  until one falls in the bucket (rejection sampling). A kind's masks rarely or never reach
  some buckets (thin strokes cover 5-17 % of a picture): the protocol's ``cells`` lists, per
  kind, only the buckets that at least ``min_hit_rate`` of its masks reach at every size
  (measured by ``python -m fillgap.evaluate``); the other cells are empty by design, so a
  bucket column averages over the kinds that can reach it (the per-kind table shows each kind).
- checksums of the prepared pictures and of the masks per size: a change in data preparation
  or in the mask generator shows up as a warning in every report (and fails the tests).

Every method comes from ``fillgap.methods``' registry and runs through ``fillgap.fill``'s
pipeline, as ``fillgap fill`` would run it: its output is composited (known pixels copied from
the original), so all methods are judged on the hole alone. Cases are run one at a
time with every method in turn, so a change in machine load touches all methods alike.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import FillgapError, did_you_mean
from .fsutil import atomic_write_text
from .imageio import read_image, write_image
from .masks import generate, hole_ratio, make_rng
from .methods import DEFAULT_RUNTIME, native_bf16
from .metrics import METRICS, image_metrics

PROTOCOL_DIR = Path(__file__).with_name("protocols")


# -- the protocol file -------------------------------------------------------------------------
class ImageSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["photos", "bundled"]   # prepared photo corpus, or the package's bundled/ folder
    split: str                             # the split of photos.csv (or bundled/) the names come from
    names: list[str]


class GridCell(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str
    kind: str
    bucket: int


class Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int
    description: str
    images: ImageSet
    preprocess: str
    sizes: list[int]
    mask_seed: int
    buckets: list[tuple[float, float]]     # hole-ratio intervals [lo, hi)
    cells: dict[str, list[int]]            # kind -> indices of the buckets it is drawn in
    min_hit_rate: float                    # the rule that chose ``cells`` (see module doc)
    max_draws: int
    grid: list[GridCell]
    images_sha256: dict[str, str] = {}     # size -> checksum of the prepared pictures
    masks_sha256: dict[str, str] = {}      # size -> checksum of every case's mask


def bucket_label(bucket: tuple[float, float]) -> str:
    return f"{round(bucket[0] * 100)}-{round(bucket[1] * 100)} %"


def available_protocols() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.json"))


def load_protocol(spec: str | Path) -> Protocol:
    """A protocol by name (``v1``, ``bundled``) or from a JSON file."""
    path = Path(spec)
    if not (path.suffix == ".json" and path.exists()):
        if str(spec) not in available_protocols():
            raise FillgapError(f"unknown protocol '{spec}'{did_you_mean(spec, available_protocols())} "
                               f"(choose from {', '.join(available_protocols())}, "
                               "or give a .json file)")
        path = PROTOCOL_DIR / f"{spec}.json"
    try:
        protocol = Protocol(**json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise FillgapError(f"bad protocol file {path}: {str(exc).splitlines()[0]}") from None
    for kind, idx in protocol.cells.items():
        if any(not 0 <= i < len(protocol.buckets) for i in idx):
            raise FillgapError(f"bad protocol file {path}: kind '{kind}' names a bucket that does not exist")
    return protocol


# -- pictures ----------------------------------------------------------------------------------
def square(image: np.ndarray, size: int) -> np.ndarray:
    """Short side resized to ``size``, then the centre ``size`` x ``size`` square."""
    h, w = image.shape[:2]
    s = size / min(h, w)
    nh, nw = (size, max(size, round(w * s))) if h <= w else (max(size, round(h * s)), size)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else image
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(resized[top:top + size, left:left + size])


def image_paths(protocol: Protocol) -> dict[str, Path]:
    spec = protocol.images
    if spec.source == "bundled":
        from .data.datasets import BUNDLED
        folder = BUNDLED / spec.split
        found = {p.stem: p for p in sorted(folder.iterdir())} if folder.is_dir() else {}
        paths = {n: found.get(n, folder / f"{n}.jpg") for n in spec.names}
        hint = "the package's bundled photos are incomplete: reinstall fillgap"
    else:
        from .data.photos import data_root
        folder = data_root() / "photos"
        paths = {n: folder / f"{n}.png" for n in spec.names}
        hint = "run `fillgap data prepare --sets photos` first, or use --protocol bundled"
    missing = [p for p in paths.values() if not p.exists()]
    if missing:
        raise FillgapError(f"protocol {protocol.name}: {len(missing)} of its {len(paths)} pictures are missing "
                           f"(e.g. {missing[0]}): {hint}")
    return paths


def load_images(protocol: Protocol, size: int) -> dict[str, np.ndarray]:
    return {name: square(read_image(path), size) for name, path in image_paths(protocol).items()}


# -- holes -------------------------------------------------------------------------------------
@dataclass
class Case:
    image: str
    kind: str
    bucket: int          # index into protocol.buckets
    mask: np.ndarray     # float32 H x W, 1 = hole
    draw: int            # how many draws the rejection sampling took before this one

    @property
    def key(self) -> str:
        return f"{self.image}|{self.kind}|{self.bucket}"


def draw_mask(protocol: Protocol, image: str, kind: str, bucket: int, size: int) -> tuple[np.ndarray, int]:
    """The first mask of the cell's seeded stream whose hole ratio falls in the bucket."""
    lo, hi = protocol.buckets[bucket]
    stream = zlib.crc32(f"{image}|{kind}|{bucket}".encode())  # stable across runs and machines
    for draw in range(protocol.max_draws):
        mask = generate(kind, make_rng(protocol.mask_seed, stream, draw), size, size)
        if lo <= hole_ratio(mask) < hi and mask.any():
            return mask, draw
    raise FillgapError(f"protocol {protocol.name}: no {kind} mask with a {bucket_label((lo, hi))} hole after "
                       f"{protocol.max_draws} draws ({image}, {size} px): the mask generator changed, "
                       "the protocol needs a new version")


def make_cases(protocol: Protocol, size: int, names: list[str] | None = None) -> list[Case]:
    """Every (picture, kind, bucket) case of the protocol, in the protocol's order."""
    cases = []
    for image in names or protocol.images.names:
        for kind, buckets in protocol.cells.items():
            for b in buckets:
                mask, draw = draw_mask(protocol, image, kind, b, size)
                cases.append(Case(image, kind, b, mask, draw))
    return cases


def masks_checksum(cases: list[Case]) -> str:
    digest = hashlib.sha256()
    for case in cases:
        digest.update(case.key.encode())
        digest.update(np.packbits(case.mask > 0).tobytes())
    return digest.hexdigest()


def images_checksum(images: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(images):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(images[name]).tobytes())
    return digest.hexdigest()


def bucket_hit_rates(kinds: tuple[str, ...] = ("thin", "medium", "thick", "box"),
                     buckets: list[tuple[float, float]] | None = None, size: int = 256,
                     draws: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """Fraction of each kind's masks that land in each bucket: the measurement behind ``cells``."""
    buckets = buckets or [(0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5)]
    rates = {}
    for kind in kinds:
        ratios = np.array([hole_ratio(generate(kind, make_rng(seed, 0, i), size, size)) for i in range(draws)])
        rates[kind] = [float(((ratios >= lo) & (ratios < hi) & (ratios > 0)).mean()) for lo, hi in buckets]
    return rates


# -- methods -----------------------------------------------------------------------------------
FillFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Method:
    name: str
    fn: FillFn
    kind: str      # classical | model
    source: str    # where it comes from (function or checkpoint path)


def peer_names(include_default: bool = True) -> list[str]:
    from .methods import available_names, classical_names
    networks = [n for n in available_names() if n not in classical_names()]
    return classical_names() + (networks if include_default else [])


def registry_method(spec, name: str | None = None, runtime: str = DEFAULT_RUNTIME) -> Method:
    """A method of ``fillgap.methods``' registry, run through the same pipeline as ``fillgap fill``."""
    from .fill import inpaint
    from .methods import get_method

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


def build_methods(peers: list[str] | None = None, checkpoints: list[str | Path] = (),
                  runtime: str = DEFAULT_RUNTIME) -> list[Method]:
    """The classical peers (all by default), the shipped model when present, and each checkpoint."""
    from .methods import classical_names, fill_method_names
    classical = classical_names()
    networks = [n for n in fill_method_names() if n not in classical]
    known = classical + networks
    chosen = peer_names() if peers is None else peers
    unknown = [p for p in chosen if p not in known]
    if unknown:
        raise FillgapError(f"unknown method '{unknown[0]}'{did_you_mean(unknown[0], known)} "
                           f"(choose from {', '.join(known)}, or 'none'; "
                           "checkpoints go in --model)")
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
    result: dict                       # every number (written as JSON)
    grid: np.ndarray                   # uint8 picture: grid cases across all methods
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
    return {"overall": group(cases),
            "by_bucket": {b: group([c for c in cases if c["bucket"] == b]) for b in buckets},
            "by_kind": {k: group([c for c in cases if c["kind"] == k]) for k in kinds}}


def run_protocol(protocol: Protocol, size: int, methods: list[Method], progress: bool = False,
                 command: str | None = None, every: int = 1) -> EvalRun:
    """Every case (or every ``every``-th, for a quicker run on the same seeded cases) through every
    method: metrics, seconds per image, and the picture grid."""
    if size not in protocol.sizes:
        raise FillgapError(f"protocol {protocol.name} is defined at sizes "
                           f"{', '.join(map(str, protocol.sizes))}, not {size}")
    images = load_images(protocol, size)
    cases = make_cases(protocol, size)
    stale = []
    checks = {"images": (images_checksum(images), protocol.images_sha256.get(str(size))),
              "masks": (masks_checksum(cases), protocol.masks_sha256.get(str(size)))}
    for what, (got, want) in checks.items():
        if want and got != want:
            stale.append(f"the {what} differ from protocol {protocol.name}'s checksum at {size} px: "
                         "numbers are not comparable with earlier reports")
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
        row = {"image": case.image, "kind": case.kind, "bucket": bucket_label(protocol.buckets[case.bucket]),
               "hole_ratio": hole_ratio(case.mask), "draw": case.draw, "results": {}}
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
        "protocol": {"name": protocol.name, "version": protocol.version, "size": size, "every": every,
                     "images": protocol.images.names, "mask_seed": protocol.mask_seed,
                     "images_sha256": checks["images"][0], "masks_sha256": checks["masks"][0],
                     "matches_protocol": not stale},
        "command": command,
        "environment": environment(),
        "methods": [{"name": m.name, "kind": m.kind, "source": m.source} for m in methods],
        "grid": [c.key for c in grid_cases],
        "summary": _summarise(rows, names, [bucket_label(b) for b in protocol.buckets]),
        "cases": rows,
    }
    return EvalRun(result, grid, stale)


BF16_NOTE = "; networks without a runtime in their name ran in bf16 (auto, on a bf16 CPU)"


def environment() -> dict:
    import skimage
    import torch
    import torchmetrics

    from . import __version__
    return {"fillgap": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "opencv": cv2.__version__, "scikit-image": skimage.__version__, "torchmetrics": torchmetrics.__version__,
            "machine": platform.machine(), "processor": _cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "opencv_threads": cv2.getNumThreads(),
            "cpu_bf16": native_bf16("cpu"),  # the default runtime ("auto") fills in bf16 where True
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- outputs -----------------------------------------------------------------------------------
def _label_strip(labels: list[str], cell: int, height: int = 22) -> np.ndarray:
    strip = np.full((height, cell * len(labels), 3), 255, np.uint8)
    for i, text in enumerate(labels):
        scale = 0.45
        while scale > 0.25 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > cell - 6:
            scale -= 0.05
        cv2.putText(strip, text, (i * cell + 3, height - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return strip


def picture_grid(cases: list[Case], images: dict[str, np.ndarray], fills: dict[str, dict[str, np.ndarray]],
                 methods: list[str]) -> np.ndarray:
    """One row per case: input with the hole in white | each method | original; labels on top."""
    rows = []
    for case in cases:
        image, hole = images[case.image], case.mask[..., None] > 0
        cells = [np.where(hole, 255, image).astype(np.uint8)] + [fills[case.key][m] for m in methods] + [image]
        rows.append(np.concatenate(cells, axis=1))
    size = next(iter(images.values())).shape[0]
    labels = ["input"] + methods + ["original"]
    if not rows:
        return _label_strip(labels, size)
    return np.concatenate([_label_strip(labels, size)] + rows, axis=0)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def summary_line(name: str, row: dict) -> str:
    """One method's overall numbers on one console line (``fillgap eval``, bench/quality.py)."""
    return (f"{name:24s} hole PSNR {_fmt(row['hole_psnr'], 2):>6s} dB  hole SSIM {_fmt(row['hole_ssim'], 3)}  "
            f"detail {_fmt(row.get('hole_detail'), 2)}  checker {_fmt(row.get('hole_checker'), 2)}  "
            f"{_seconds(row['seconds'])} s/image")


def render_markdown(result: dict) -> str:
    """The report: hole PSNR / SSIM / detail ratio / checker ratio / seconds by bucket and by kind, then all
    metrics."""
    p, s = result["protocol"], result["summary"]
    methods = [m["name"] for m in result["methods"]]
    n_cases = len(result["cases"])
    env = result["environment"]
    lines = [f"# Inpainting quality: protocol {p['name']} (version {p['version']}), {p['size']}x{p['size']}", ""]
    if result.get("command"):
        lines += [f"Command: `{result['command']}`", ""]
    subset = f" (every {p['every']}th case of the protocol, in its order)" if p.get("every", 1) > 1 else ""
    lines += [f"{n_cases} cases{subset}: {len(p['images'])} pictures x their (mask kind, hole-ratio bucket) cells, "
              f"mask seed {p['mask_seed']}. Outputs are composited (known pixels kept) before scoring. "
              "Seconds: wall time of the fill call alone, per image, every method in the same run "
              f"and interleaved case by case; {env['processor']}, {env['cpu_count']} logical CPUs, "
              f"torch {env['torch']} with {env['torch_threads']} thread(s)"
              f"{BF16_NOTE if env.get('cpu_bf16') else ''}, "
              f"load average at the end {env['load_average']}.", ""]
    if not p.get("matches_protocol", True):
        lines += ["**Warning: the pictures or masks differ from the protocol's checksums; these numbers are "
                  "not comparable with earlier reports.**", ""]

    def table(title: str, groups: dict, label: Callable[[str], str]) -> list[str]:
        cols = list(groups)
        out = [f"## {title}", "",
               "Each cell: hole PSNR (dB) / hole SSIM / hole detail ratio / hole checker ratio / seconds per image.",
               "",
               "| method | " + " | ".join(label(c) for c in cols) + " |",
               "|---|" + "---|" * len(cols)]
        for m in methods:
            cells = [f"{_fmt(groups[c][m]['hole_psnr'], 2)} / {_fmt(groups[c][m]['hole_ssim'], 3)} / "
                     f"{_fmt(groups[c][m].get('hole_detail'), 2)} / {_fmt(groups[c][m].get('hole_checker'), 2)} / "
                     f"{_seconds(groups[c][m]['seconds'])}"
                     for c in cols]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("| cases | " + " | ".join(str(groups[c][methods[0]]["n"]) for c in cols) + " |")
        return out + [""]

    flat = sum(1 for c in result["cases"] if c["results"][methods[0]].get("hole_detail") is None)
    lines += ["Hole detail ratio: std of the 3x3 Laplacian of the grey (BT.601) picture over the hole, fill "
              "divided by original; 1.0 = as much fine texture as the truth, below 1 = smoother, above = "
              "noisier. Mean of the per-case ratios"
              + (f"; {flat} case(s) with a flat original hole (ratio undefined) left out." if flat else ".")
              + " Hole checker ratio: mean square of the grey picture filtered with the 2x2 kernel [[1, -1], "
              "[-1, 1]] over the hole, fill divided by original (mean of the defined per-case ratios); 1.0 = as much "
              "2x2 checker energy as the truth, above = a grid pattern. See fillgap/metrics.py.", ""]
    by_bucket = {**s["by_bucket"], "all": s["overall"]}
    lines += table("By hole ratio", by_bucket, lambda c: c)
    lines += table("By mask kind", {**s["by_kind"], "all": s["overall"]}, lambda c: c)
    lines += ["## All metrics, all cases", "",
              "Means over cases. PSNR in dB (capped at 100), L1 in [0, 1] units, MS-SSIM only from 161 px.", "",
              "| method | PSNR | SSIM | MS-SSIM | L1 | hole PSNR | hole SSIM | hole L1 | hole detail | hole checker "
              "| s / image |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        o = s["overall"][m]
        lines.append(f"| {m} | {_fmt(o['psnr'], 2)} | {_fmt(o['ssim'], 4)} | {_fmt(o['ms_ssim'], 4)} | "
                     f"{_fmt(o['l1'], 4)} | {_fmt(o['hole_psnr'], 2)} | {_fmt(o['hole_ssim'], 3)} | "
                     f"{_fmt(o['hole_l1'], 4)} | {_fmt(o.get('hole_detail'), 3)} | {_fmt(o.get('hole_checker'), 3)} | "
                     f"{_seconds(o['seconds'])} |")
    lines += ["", "Methods: " + "; ".join(f"{m['name']} = {m['source']}" for m in result["methods"]), ""]
    return "\n".join(lines)


def output_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {ext: out_dir / f"{stem}.{ext}" for ext in ("md", "json", "png")}


def check_outputs(out_dir: str | Path, stem: str, overwrite: bool) -> dict[str, Path]:
    """The three output paths; refuses (before any work) to replace existing ones unless asked."""
    paths = output_paths(out_dir, stem)
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FillgapError(f"output exists: {existing[0]} (pass --overwrite to replace it)")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise FillgapError(f"--out must be a folder: {out_dir} is a file")
    return paths


def _write_text(path: Path, text: str) -> None:
    """Whole or not at all: a crash or a full disk never leaves half a report."""
    atomic_write_text(path, text, overwrite=True)


def write_outputs(run: EvalRun, out_dir: str | Path, stem: str, overwrite: bool = False) -> dict[str, Path]:
    """``<stem>.md`` (tables), ``<stem>.json`` (every number), ``<stem>.png`` (the grid), atomically."""
    paths = check_outputs(out_dir, stem, overwrite)
    _write_text(paths["json"], json.dumps(run.result, indent=1) + "\n")
    _write_text(paths["md"], render_markdown(run.result))
    write_image(paths["png"], run.grid, overwrite=True)
    return paths


def set_threads(threads: int | None) -> int:
    """PyTorch's and OpenCV's worker threads (every method alike), by fillgap's one thread policy.

    On a shared or small machine, more threads than free cores makes timings swing tenfold;
    one thread per method gives stable, comparable seconds.
    """
    from .runtime.threads import set_threads as apply
    return apply(threads)


def evaluate(protocol: str | Path = "v1", size: int = 256, checkpoints: list[str | Path] = (),
             methods: list[str] | None = None, out: str | Path | None = None, stem: str | None = None,
             overwrite: bool = False, progress: bool = True, command: str | None = None,
             threads: int | None = None, every: int = 1, runtime: str = DEFAULT_RUNTIME) -> EvalRun:
    """Load the protocol, build the methods, run, and (with ``out``) write the three reports.

    ``runtime``: how networks run (``auto``, ``torch``, ``torch-bf16``, ``onnx``, see ``fillgap.methods``);
    classical peers are unaffected."""
    set_threads(threads)
    proto = load_protocol(protocol)
    stem = stem or f"eval-{proto.name}-{size}"
    if out is not None:
        check_outputs(out, stem, overwrite)  # fail before minutes of work, not after
    # Checksum mismatches are in run.stale and in the reports: the caller decides how to show them.
    run = run_protocol(proto, size, build_methods(methods, checkpoints, runtime), progress=progress,
                       command=command, every=every)
    if out is not None:
        run.paths = write_outputs(run, out, stem, overwrite)
    return run


def _print_hit_rates() -> None:
    proto = load_protocol("v1")
    for size in proto.sizes:
        rates = bucket_hit_rates(tuple(proto.cells), proto.buckets, size)
        print(f"{size} px: share of 2,000 masks per hole-ratio bucket "
              f"({', '.join(bucket_label(b) for b in proto.buckets)})")
        for kind, r in rates.items():
            print(f"  {kind:7s} " + "  ".join(f"{x * 100:5.2f} %" for x in r))


if __name__ == "__main__":
    _print_hit_rates()
