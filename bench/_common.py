"""What every benchmark shares: where results go, the machine they ran on, and how they are saved.

    from _common import RESULTS, machine, save_json, save_text, stop_process, timed

``machine()`` records the CPU count, versions and the 1-minute load average (the machines these
run on are shared, so every figure is stored with the load it was measured under); the result
files are written whole or not at all (``fillgap.fsutil.atomic_write``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine(**extra) -> dict:
    """The machine and software a figure comes from, with the load average right now."""
    import numpy
    import torch

    info = {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "nice": os.nice(0),
        "load_average": load_average(),
    }
    info.update(extra)
    return info


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn``, after one warm-up call."""
    import statistics
    import time

    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def stop_process(proc: subprocess.Popen, grace: float = 30) -> None:
    """Ask a child (e.g. a server under test) to end, kill it after ``grace`` seconds, and reap it."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def proc_memory_mb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (its peak) of a process, in MB (Linux /proc)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def save_text(path: str | Path, text: str) -> Path:
    from fillgap.fsutil import atomic_write_text

    path = Path(path)
    if not path.is_absolute() and path.parent == Path("."):
        path = RESULTS / path
    return atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def save_json(path: str | Path, data) -> Path:
    """``data`` as indented JSON; a bare file name goes into bench/results/."""
    return save_text(path, json.dumps(data, indent=1))
