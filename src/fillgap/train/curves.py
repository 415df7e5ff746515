"""The loss-curve picture written beside a training run's grids (``loss-curve.png``)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from ..fsutil import atomic_write


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl``; a line cut short by a kill is skipped."""
    records = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def write_loss_curve(records: list[dict], path: str | Path) -> Path | None:
    """Training loss (log scale) and validation hole PSNR against the step; None without data."""
    steps = [(r["step"], r["loss"]) for r in records if "loss" in r and "step" in r]
    vals = [(r["step"], r["val_psnr_hole"]) for r in records if "val_psnr_hole" in r and "step" in r]
    if not steps and not vals:
        return None
    from matplotlib.figure import Figure  # no pyplot: no display, no global state

    fig = Figure(figsize=(7, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if steps:
        x, y = zip(*steps)
        ax.plot(x, y, color="tab:blue", linewidth=1, label="training loss")
        if min(y) > 0:
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    if vals:
        right = ax.twinx()
        x, y = zip(*vals)
        right.plot(x, y, "o-", color="tab:orange", markersize=3, linewidth=1, label="validation hole PSNR")
        right.set_ylabel("validation hole PSNR (dB)", color="tab:orange")
    ax.set_title(f"{Path(path).parent.name}: {max([s for s, _ in steps + vals])} steps")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getbuffer(), overwrite=True)
