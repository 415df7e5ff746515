"""One thread policy for ``fill``, ``serve`` and ``eval``.

Precedence: an explicit ``--threads`` value, else ``$FILLGAP_THREADS``, else the cores this
process may run on (CPU affinity) minus the cores other programs are keeping busy right now.
More compute threads than free cores is the expensive mistake: every parallel region then
waits for the thread that the scheduler parked behind someone else (measured 20x slower on
2 cores with one busy). Waiting threads sleep instead of spinning (``OMP_WAIT_POLICY``,
set in ``fillgap/__init__.py`` because OpenMP reads it once, when torch loads).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..errors import FillgapError

ENV = "FILLGAP_THREADS"
# A runnable task niced this much more than us takes at most ~25 % of a core from us (the
# kernel's weights drop about 1.25x per nice level), so it does not count as keeping a core busy.
_NICE_IGNORED = 5


def available_cores() -> int:
    """Cores this process may run on (affinity mask, e.g. taskset or a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _running_elsewhere() -> int | None:
    """Runnable threads of other processes not niced far below us, from /proc; None if unreadable."""
    me, count, seen = os.getpid(), 0, False
    limit = os.nice(0) + _NICE_IGNORED
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the task ended meanwhile
        seen = True
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
        fields = text[text.rfind(")") + 2 :].split()
        if fields[0] != "R" or int(stat.parts[2]) == me:
            continue
        if int(fields[16]) < limit:  # field 19 of stat: nice
            count += 1
    return count if seen else None


def _runnable_total() -> int | None:
    """Runnable threads on the whole machine, this one included (/proc/loadavg's 4th field)."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def busy_cores(samples: int = 2, gap_s: float = 0.005) -> int:
    """Cores other programs keep busy now: the fewest runnable foreign threads over a few snapshots.

    The minimum keeps a momentary burst (a shell starting) from halving our threads; a
    program that computes continuously is runnable in every snapshot.
    """
    counts = []
    for i in range(samples):
        if i:
            time.sleep(gap_s)
        total = _runnable_total()
        # Fast path: nothing but this thread runnable, no need to look at every task.
        n = 0 if total == 1 else _running_elsewhere()
        if n is None:  # no per-task /proc: the system-wide count minus this thread, or the load average
            n = total - 1 if total is not None else int(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
        counts.append(max(0, n))
    return min(counts)


_cached: tuple[float, int] = (-1e9, 0)


def default_threads(max_age_s: float = 1.0) -> int:
    """Free cores right now (at least 1); re-measured at most once per ``max_age_s`` (a server asks per fill)."""
    global _cached
    now = time.monotonic()
    if now - _cached[0] > max_age_s:
        cores = available_cores()
        _cached = (now, max(1, min(cores, cores - busy_cores())))
    return _cached[1]


def resolve_threads(threads: int | None = None) -> int:
    """``threads`` if given, else ``$FILLGAP_THREADS``, else ``default_threads()``."""
    if threads is None:
        env = os.environ.get(ENV, "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise FillgapError(f"{ENV} must be a whole number, got '{env}'") from None
            if threads < 1:
                raise FillgapError(f"{ENV} must be at least 1, got {threads}")
        else:
            return default_threads()
    if threads < 1:
        raise FillgapError(f"--threads must be at least 1, got {threads}")
    return threads


_torch_threads: int | None = None  # the last ``set_threads`` count, for torch once it is loaded


def set_threads(threads: int | None = None) -> int:
    """Resolve the count and apply it to torch and OpenCV; returns it.

    torch's count is per calling thread under OpenMP: call this from the thread that fills. A
    process that has not loaded torch (a classical fill may never need it) does not load it
    here: ``fillgap.fill.run`` applies the count when torch is used (``apply_torch_threads``).
    """
    import cv2

    global _torch_threads
    n = _torch_threads = resolve_threads(threads)
    if "torch" in sys.modules:
        apply_torch_threads()
    cv2.setNumThreads(n)
    return n


def apply_torch_threads() -> None:
    """Give torch, in the calling thread, the count of the last ``set_threads`` (if any)."""
    if _torch_threads is not None:
        import torch

        if torch.get_num_threads() != _torch_threads:
            torch.set_num_threads(_torch_threads)
