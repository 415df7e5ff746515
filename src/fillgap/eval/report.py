"""An evaluation's outputs: the markdown report, the picture grid and the JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from ..errors import FillgapError
from ..fsutil import atomic_write_text
from ..imageio import write_image
from .protocol import Case

if TYPE_CHECKING:
    from .runner import EvalRun

BF16_NOTE = "; networks without a runtime in their name ran in bf16 (auto, on a bf16 CPU)"


# -- outputs -----------------------------------------------------------------------------------
def _label_strip(labels: list[str], cell: int, height: int = 22) -> np.ndarray:
    strip = np.full((height, cell * len(labels), 3), 255, np.uint8)
    for i, text in enumerate(labels):
        scale = 0.45
        while scale > 0.25 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > cell - 6:
            scale -= 0.05
        cv2.putText(strip, text, (i * cell + 3, height - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def picture_grid(
    cases: list[Case], images: dict[str, np.ndarray], fills: dict[str, dict[str, np.ndarray]], methods: list[str]
) -> np.ndarray:
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
    return (
        f"{name:24s} hole PSNR {_fmt(row['hole_psnr'], 2):>6s} dB  hole SSIM {_fmt(row['hole_ssim'], 3)}  "
        f"detail {_fmt(row.get('hole_detail'), 2)}  checker {_fmt(row.get('hole_checker'), 2)}  "
        f"{_seconds(row['seconds'])} s/image"
    )


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
    lines += [
        f"{n_cases} cases{subset}: {len(p['images'])} pictures x their (mask kind, hole-ratio bucket) cells, "
        f"mask seed {p['mask_seed']}. Outputs are composited (known pixels kept) before scoring. "
        "Seconds: wall time of the fill call alone, per image, every method in the same run "
        f"and interleaved case by case; {env['processor']}, {env['cpu_count']} logical CPUs, "
        f"torch {env['torch']} with {env['torch_threads']} thread(s)"
        f"{BF16_NOTE if env.get('cpu_bf16') else ''}, "
        f"load average at the end {env['load_average']}.",
        "",
    ]
    if not p.get("matches_protocol", True):
        lines += [
            "**Warning: the pictures or masks differ from the protocol's checksums; these numbers are "
            "not comparable with earlier reports.**",
            "",
        ]

    def table(title: str, groups: dict, label: Callable[[str], str]) -> list[str]:
        cols = list(groups)
        out = [
            f"## {title}",
            "",
            "Each cell: hole PSNR (dB) / hole SSIM / hole detail ratio / hole checker ratio / seconds per image.",
            "",
            "| method | " + " | ".join(label(c) for c in cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for m in methods:
            cells = [
                f"{_fmt(groups[c][m]['hole_psnr'], 2)} / {_fmt(groups[c][m]['hole_ssim'], 3)} / "
                f"{_fmt(groups[c][m].get('hole_detail'), 2)} / {_fmt(groups[c][m].get('hole_checker'), 2)} / "
                f"{_seconds(groups[c][m]['seconds'])}"
                for c in cols
            ]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("| cases | " + " | ".join(str(groups[c][methods[0]]["n"]) for c in cols) + " |")
        return out + [""]

    flat = sum(1 for c in result["cases"] if c["results"][methods[0]].get("hole_detail") is None)
    lines += [
        "Hole detail ratio: std of the 3x3 Laplacian of the grey (BT.601) picture over the hole, fill "
        "divided by original; 1.0 = as much fine texture as the truth, below 1 = smoother, above = "
        "noisier. Mean of the per-case ratios"
        + (f"; {flat} case(s) with a flat original hole (ratio undefined) left out." if flat else ".")
        + " Hole checker ratio: mean square of the grey picture filtered with the 2x2 kernel [[1, -1], "
        "[-1, 1]] over the hole, fill divided by original (mean of the defined per-case ratios); 1.0 = as much "
        "2x2 checker energy as the truth, above = a grid pattern. See fillgap/eval/metrics.py.",
        "",
    ]
    by_bucket = {**s["by_bucket"], "all": s["overall"]}
    lines += table("By hole ratio", by_bucket, lambda c: c)
    lines += table("By mask kind", {**s["by_kind"], "all": s["overall"]}, lambda c: c)
    lines += [
        "## All metrics, all cases",
        "",
        "Means over cases. PSNR in dB (capped at 100), L1 in [0, 1] units, MS-SSIM only from 161 px.",
        "",
        "| method | PSNR | SSIM | MS-SSIM | L1 | hole PSNR | hole SSIM | hole L1 | hole detail | hole checker "
        "| s / image |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        o = s["overall"][m]
        lines.append(
            f"| {m} | {_fmt(o['psnr'], 2)} | {_fmt(o['ssim'], 4)} | {_fmt(o['ms_ssim'], 4)} | "
            f"{_fmt(o['l1'], 4)} | {_fmt(o['hole_psnr'], 2)} | {_fmt(o['hole_ssim'], 3)} | "
            f"{_fmt(o['hole_l1'], 4)} | {_fmt(o.get('hole_detail'), 3)} | {_fmt(o.get('hole_checker'), 3)} | "
            f"{_seconds(o['seconds'])} |"
        )
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
