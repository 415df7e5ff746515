"""Filling a folder of thousands of pictures: threaded reading and writing, batched network calls,
resumable.

Pipeline: ``workers`` reader threads decode a picture and its mask and run ``fillgap.fill``'s
mask and plan steps (the windows ``fillgap.inpaint`` would fill) -> the calling thread stacks
windows of the same size and strategy and runs the method (``fillgap.fill.run``) on up to
``batch_size`` of them at a time, compositing each back (``fillgap.fill.composite``) ->
``workers`` writer threads write each finished picture atomically. Every output equals
``fillgap.inpaint`` on its picture: the same steps, no copy of them here.
Windows of different sizes never share a batch (the network's result depends on the size), so
batching pays off when holes have the same extent, e.g. a logo or a date stamp at the same place
in every picture, or holes large enough that the window is the whole (same-size) picture.

Resuming: an output that exists is skipped (unless ``overwrite``); writes are atomic (temp file,
then rename), so an interrupted run leaves whole outputs only, and an output that is empty or cut
short (left by another tool or an older fillgap) is redone; any other existing file (a picture
followed by other bytes, not a picture, a link) fails its row unless ``overwrite``. Outputs go
inside the output folder only: a row whose output folder is a link out of it fails. On a full disk the run stops after
``MAX_DISK_FULL`` failed writes in a row instead of failing every remaining picture. SIGINT and SIGTERM let the writes
in progress finish; after a SIGKILL, leftover temp files (``.NAME.XXXX.fillgap-tmp``) are removed
by the next run. A lock file in the output folder keeps two runs from writing there at once.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..files import _same_format, adjust_mask, load_mask_for
from .plan import FolderReport
from .common import RunLog, locked_run, start_run
from .._lazy import lazy
from ..errors import FillgapError
from ..fill import WindowJob, check_max_side, check_strategy, composite, inpaint, prepare_mask
from ..fill import plan as plan_windows
from ..fill import run as run_windows
from ..fsutil import WriteError
from ..imageio import copy_file, output_state, read_picture, write_image
from ..methods import FillMethod, get_method

if TYPE_CHECKING:
    from ..models import InpaintModel

torch = lazy("torch")  # networks only: a classical method's folder run never loads it

MAX_DISK_FULL = 3  # failed writes in a row on a full disk before the run stops
# One network call takes at most this many window pixels (batch x H x W): big windows go in
# smaller batches, so memory stays bounded whatever --batch-size says.
MAX_BATCH_PIXELS = 4 * 1024 * 1024


@dataclass
class _Job:
    image: Path
    out: Path
    rgb: np.ndarray  # uint8 H x W x 3
    alpha: np.ndarray | None  # the picture's transparency, written back unchanged
    metadata: dict[str, bytes]  # colour profile and EXIF, written back (imageio.picture_metadata)
    grey: bool  # a greyscale file, written back greyscale
    hole_alpha: np.ndarray  # H x W: fillgap.fill.prepare_mask's weights (bool for --blend hard)
    windows: list[WindowJob]  # empty: nothing to fill, or filled already (``result``)
    result: np.ndarray | None = None  # the picture being composited, window by window
    left: int = 0  # windows not filled yet


def _prepare(
    image: Path,
    mask: Path,
    out: Path,
    method: FillMethod,
    dilate: int,
    resize_mask: bool,
    strategy: str,
    max_side: int | None,
    blend: str,
    mask_options: dict | None = None,
) -> _Job:
    """Reader thread: decode, then ``fillgap.fill``'s mask and plan steps. ``mask_options``:
    ``load_mask_for``'s invert_mask, mask_threshold and force."""
    rgb, alpha, metadata, grey = read_picture(image)
    mask = load_mask_for(rgb.shape[:2], mask, resize_mask, **(mask_options or {}))
    hole_alpha = prepare_mask(mask, rgb.shape[:2], dilate, blend)
    if not (hole_alpha > 0).any():
        return _Job(image, out, rgb, alpha, metadata, grey, hole_alpha, [])
    if getattr(method, "fill_array", None) is not None:
        # A classical method fills one picture at a time anyway: here in the reader thread, on
        # numpy arrays where it works at native size (fillgap.fill.inpaint's array route), so a
        # Telea folder run never loads torch; the same bytes as the window-by-window path.
        filled = inpaint(rgb, mask, method, dilate, max_side, strategy=strategy, blend=blend)
        return _Job(image, out, rgb, alpha, metadata, grey, hole_alpha, [], filled)
    windows = list(plan_windows(rgb, hole_alpha, method, strategy, max_side))
    return _Job(image, out, rgb, alpha, metadata, grey, hole_alpha, windows, rgb.copy(), len(windows))


def fill_folder(
    image_dir: Path,
    mask_dir: Path,
    out_dir: Path,
    model: FillMethod | InpaintModel | str | None,
    *,
    workers: int = 2,
    batch_size: int = 8,
    dilate: int = 0,
    overwrite: bool = False,
    resize_mask: bool = False,
    progress: bool | str = False,
    max_side: int | None = None,
    output_format: str = "auto",
    on_event: Callable[[str, Path, str], None] | None = None,
    progress_every: float = 10.0,
    strategy: str = "auto",
    blend: str = "hard",
    invert_mask: bool = False,
    force: bool = False,
    mask_threshold: int | None = None,
) -> FolderReport:
    """Fill every picture under ``image_dir`` with its mask from ``mask_dir`` (or with one mask
    file for all, when ``mask_dir`` is a file) into ``out_dir``
    (same relative paths; lossy inputs written as PNG unless ``output_format`` says otherwise).
    Pictures without a mask, unreadable files and failed writes are listed in the report's
    ``failed`` (and in ``out_dir/fillgap-failures.csv``); existing outputs in ``skipped_existing``;
    folders named like pictures in ``skipped``. ``on_event("failed" | "skipped", path, why)`` is
    called as they happen.
    ``progress``: True or "bar" (a terminal), "lines" (a line every ``progress_every`` s on stdout).
    ``invert_mask``, ``mask_threshold``, ``force``: as in ``fillgap.files.fill_file``; a refused mask
    fails its picture only."""
    if workers < 1 or batch_size < 1:
        raise FillgapError("--workers and --batch-size must be at least 1")
    strategy, max_side = check_strategy(strategy), check_max_side(max_side)
    fill_args = (
        dilate,
        resize_mask,
        strategy,
        max_side,
        blend,
        dict(invert_mask=invert_mask, mask_threshold=mask_threshold, force=force),
    )
    prepare_mask(np.zeros((1, 1), np.float32), (1, 1), dilate, blend)  # bad settings fail before any file
    adjust_mask(np.zeros((1, 1), np.float32), threshold=mask_threshold)
    out_dir = Path(out_dir)
    run, log, todo = start_run(
        image_dir,
        mask_dir,
        out_dir,
        output_format,
        overwrite,
        progress=progress,
        on_event=on_event,
        every=progress_every,
        warmup=batch_size,
    )
    with locked_run(out_dir, log, todo):
        if todo:
            _run(todo, get_method(model), log, workers, batch_size, overwrite, fill_args)
    return log.report


def _run(todo, method, log: RunLog, workers, batch_size, overwrite, fill_args) -> None:
    readers = ThreadPoolExecutor(workers, thread_name_prefix="fillgap-read")
    writers = ThreadPoolExecutor(workers, thread_name_prefix="fillgap-write")
    reads: deque[tuple[Path, Future]] = deque()
    writes: dict[Future, Path] = {}
    groups: dict[tuple, list[tuple[_Job, WindowJob]]] = {}  # strategy, window size -> windows waiting
    lookahead = max(2 * batch_size, 4 * workers)  # decoded pictures held in memory, at most
    pending = iter(todo)
    full = [0]  # failed writes in a row on a full disk

    def reap(block: bool = False) -> None:
        done = [f for f in writes if f.done()]
        if block and not done:
            done = list(wait(writes, return_when=FIRST_COMPLETED).done)
        for f in done:
            image = writes.pop(f)
            try:
                log.written(f.result())
                full[0] = 0
            except Exception as exc:  # a full disk, a vanished folder: this file failed, go on
                log.failed(image, str(exc) if isinstance(exc, FillgapError) else repr(exc))
                full[0] = full[0] + 1 if isinstance(exc, WriteError) and exc.disk_full else 0
        if full[0] >= MAX_DISK_FULL:
            raise FillgapError(
                f"stopped: the disk is full ({full[0]} writes in a row failed: "
                f"{log.report.failed[-1][1]}); {len(log.report.written)} pictures written this "
                "run. Free some space and run the same command again to do the rest"
            )

    def write(job: _Job, result: np.ndarray | None) -> None:
        while len(writes) >= 2 * workers:  # do not queue more results than the writers keep up with
            reap(block=True)
        # an output left empty or cut short (triage let it through) is replaced; any other file
        # found there (one that appeared since) makes the write fail with "output exists"
        replace = overwrite or output_state(job.out)[0] == "cut"
        if result is None and _same_format(job.image, job.out):
            # nothing to fill: the file itself, byte for byte, as fill_file does
            f = writers.submit(copy_file, job.image, job.out, replace)
        elif result is None:  # nothing to fill, another format: the decoded pixels
            f = writers.submit(write_image, job.out, job.rgb, job.alpha, replace, job.metadata, job.grey)
        else:
            f = writers.submit(write_image, job.out, result, job.alpha, replace, job.metadata, job.grey)
        writes[f] = job.image
        reap()

    max_side = fill_args[3]

    def flush(key: tuple) -> None:
        pairs = groups.pop(key)
        step = batch_size if method.batchable else 1
        for i in range(0, len(pairs), step):
            chunk = pairs[i : i + step]
            fills = run_windows(
                method, torch.cat([w.image for _, w in chunk]), torch.cat([w.hole for _, w in chunk]), key[0], max_side
            )
            for (job, win), fill in zip(chunk, fills):
                composite(job.result, job.rgb, job.hole_alpha, win.window, fill, win.write)
                job.left -= 1
                if job.left == 0:
                    write(job, job.result)

    try:
        while True:
            for img, msk, out in pending:
                reads.append((img, readers.submit(_prepare, img, msk, out, method, *fill_args)))
                if len(reads) >= lookahead:
                    break
            if not reads:
                break
            img, fut = reads.popleft()
            try:
                job = fut.result()
            except Exception as exc:  # unreadable picture or mask, wrong mask size: list it, go on
                log.failed(img, str(exc) if isinstance(exc, FillgapError) else repr(exc))
                continue
            if not job.windows:
                write(job, job.result)  # None: nothing to fill
                continue
            for win in job.windows:
                key = win.key
                groups.setdefault(key, []).append((job, win))
                if len(groups[key]) >= batch_size or len(groups[key]) * key[1] * key[2] >= MAX_BATCH_PIXELS:
                    flush(key)
            while sum(map(len, groups.values())) >= lookahead:
                flush(next(iter(groups)))  # the longest-waiting size: memory stays bounded
        while groups:
            flush(next(iter(groups)))
        while writes:
            reap(block=True)
    finally:
        # On an interrupt: drop the queued work, let the writes in progress finish (atomic either way).
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True, cancel_futures=True)
        for f, image in writes.items():  # only left over after an interrupt
            if not f.cancelled() and f.exception() is None:
                log.written(f.result())
