"""Fill a folder or a manifest on a Ray cluster (Ray Data ``map_batches`` with an actor pool).

Same plan and guarantees as the local engine: each output is written atomically by the actor that
filled it, never over an existing file without ``overwrite``; a rerun skips what is there; a bad
picture is a row in ``OUT/fillgap-failures.csv``, not a stopped job. The driver (this process)
holds the output folder's lock and keeps the log; the actors load the model once each and do the
reading, filling and writing, so pixels never travel through the driver.

Each actor fills its pictures one at a time through ``fillgap.files.fill_file`` (the same function
as a single-picture ``fillgap fill``: ``fillgap.fill``'s one pipeline), so its outputs equal the
local engine's byte for byte.

Paths: local paths and file:// URIs are files on the workers' shared file system (NFS, ...);
other URIs (s3://, gs://, hdfs://: any pyarrow file system, in a manifest) are read and written
through pyarrow (atomic where the store's ``move`` is; written, not tested against a real store).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import select
import sys
import threading
from pathlib import Path, PurePosixPath
from typing import Callable

from .plan import FolderReport
from ..errors import FillgapError
from .common import RunLog, local_path, not_ours, start_run
from ..imageio import output_state

STATUS_WRITTEN, STATUS_EXISTS, STATUS_FAILED = "written", "exists", "failed"


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FillgapError) else f"{type(exc).__name__}: {exc}"


def _read_bytes(uri: str) -> bytes:
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read()
    except (OSError, FileNotFoundError) as exc:
        raise FillgapError(f"cannot read {uri}: {exc}") from None


def _fill_uri(picture, mask, output, method, dilate: int, overwrite: bool, resize_mask: bool, settings: dict) -> str:
    """One picture where some path is a remote URI: bytes through pyarrow, same fill and encoding."""
    import pyarrow.fs as pafs

    from ..fill import inpaint
    from ..imageio import OUTPUT_FORMATS, encode_image, read_mask_bytes, read_picture_bytes

    def load(p):
        return Path(p).read_bytes() if local_path(p) is not None else _read_bytes(str(p))

    from ..files import adjust_mask, check_mask
    from ..fill.mask import mask_for

    settings = dict(settings)
    invert, threshold, force = (
        settings.pop(k, d) for k, d in (("invert_mask", False), ("mask_threshold", None), ("force", False))
    )
    rgb, alpha, metadata, grey = read_picture_bytes(load(picture), name=str(picture))
    original = read_mask_bytes(load(mask), name=str(mask))
    m = adjust_mask(original, invert, threshold)
    m = mask_for(m, rgb.shape[:2], resize_mask, f"mask {mask}")
    check_mask(m, mask, force, original)  # as fill_file checks a local mask
    result = inpaint(rgb, m, method, dilate, **settings)
    fmt = OUTPUT_FORMATS.get(PurePosixPath(str(output)).suffix.lower())
    if fmt is None:
        raise FillgapError(f"unknown output format for {output}")
    data = encode_image(result, alpha, fmt, metadata, grey)  # as fill_file writes it: profile, EXIF, grey kept
    fs, path = pafs.FileSystem.from_uri(str(output))
    if fs.get_file_info(path).type != pafs.FileType.NotFound and not overwrite:
        return STATUS_EXISTS
    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    tmp = f"{parent}/.{name}.{secrets.token_hex(4)}.fillgap-tmp" if parent else f".{name}.fillgap-tmp"
    with fs.open_output_stream(tmp) as fh:
        fh.write(data)
    fs.move(tmp, path)
    return STATUS_WRITTEN


def fill_one(
    picture,
    mask,
    output,
    method,
    dilate: int = 0,
    overwrite: bool = False,
    resize_mask: bool = False,
    settings: dict | None = None,
) -> tuple[str, str]:
    """(status, reason) of one row: written, exists (a rerun, or a retried task), or failed."""
    from ..files import fill_file

    out, img, msk = local_path(output), local_path(picture), local_path(mask)
    try:
        if out is not None and img is not None and msk is not None:
            replace = overwrite
            if not overwrite:
                state, why = output_state(out)
                if state == "whole":
                    return STATUS_EXISTS, ""
                if state == "foreign":  # not ours: left alone, as locally
                    return STATUS_FAILED, not_ours(out, why)
                replace = state == "cut"  # empty or cut short (another tool, a full disk): redone
            fill_file(img, msk, out, method, dilate, replace, resize_mask, **(settings or {}))
            return STATUS_WRITTEN, ""
        return _fill_uri(picture, mask, output, method, dilate, overwrite, resize_mask, settings or {}), ""
    except Exception as exc:  # one bad picture never stops the job
        if out is not None and out.exists() and not overwrite and "output exists" in str(exc):
            return STATUS_EXISTS, ""  # written meanwhile by a retried task (or a killed run's actor)
        return STATUS_FAILED, _reason(exc)


class FillActor:
    """One per actor: the fill method (a network, or a classical one) is loaded once, then each
    batch of rows is filled and written."""

    def __init__(
        self,
        model,
        dilate: int,
        overwrite: bool,
        resize_mask: bool,
        threads: int,
        settings: dict | None = None,
        runtime: str = "auto",
    ):
        import torch

        from ..methods import TorchNetwork, get_method

        torch.set_num_threads(max(1, threads))
        self.method = get_method(model, runtime)
        # an actor given a GPU (--gpus-per-actor) runs a torch network there (onnxruntime picks its own
        # device); the texture stage's network too (its copies run where the picture is: the CPU)
        network = self.method.network
        if torch.cuda.is_available() and type(network) is TorchNetwork:
            network.model.cuda()
        self.options = (dilate, overwrite, resize_mask, settings or {})

    def __call__(self, batch):
        status, reason = [], []
        for picture, mask, output in zip(batch["picture"], batch["mask"], batch["output"]):
            s, r = fill_one(str(picture), str(mask), str(output), self.method, *self.options)
            status.append(s)
            reason.append(r)
        return {"picture": batch["picture"], "output": batch["output"], "status": status, "reason": reason}


# What Ray says on every run that means nothing to a fillgap user; everything else it prints (its
# real errors, ours) still shows. Python loggers (logger name, start of the message):
RAY_NOISE_LOGS = (
    # token authentication on (Ray's default) for the local cluster fillgap starts: nothing to do
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled"),
    # fillgap turns Ray Data's progress bars off: its own progress lines and bar report the run
    ("ray.data._internal.progress", "Progress bars disabled"),
)
# Lines of Ray's C++ core on the driver's stderr: Ray Data's own actor pool triggers this error-level
# line on every run (https://github.com/ray-project/ray/issues/57733), though fillgap's actor
# arguments are small names and settings.
RAY_NOISE_LINES = re.compile(
    rb"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the "
    rb"object store and max_restarts > 0"
)


class _DropMessages(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


def quiet_ray_logs() -> None:
    """Drop ``RAY_NOISE_LOGS`` (once per process; the filters stay on the loggers)."""
    for name, start in RAY_NOISE_LOGS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and f.start == start for f in logger.filters):
            logger.addFilter(_DropMessages(start))


@contextlib.contextmanager
def drop_stderr_lines(pattern: re.Pattern, fd: int = 2):
    """Lines written to ``fd`` (the process's stderr: C++ code writes there directly, past
    ``sys.stderr``) that match ``pattern`` are dropped, the others passed on as they come (a
    progress bar's ``\\r`` updates too). Only for the block: the descriptor is restored after it."""
    try:
        sys.stderr.flush()
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):  # no usable stderr (closed, replaced): nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    stop = threading.Event()

    def forward(data: bytes) -> None:
        try:
            while data:
                data = data[os.write(saved, data) :]
        except OSError:
            pass  # stderr closed by the reader (a pipe into `head`): nothing to show it to

    def pump() -> None:
        pending = b""
        while True:
            if select.select([read_end], [], [], 0.1)[0]:
                chunk = os.read(read_end, 65536)
                if not chunk:  # no writer left: the block is over
                    break
                pending += chunk
                *whole, pending = re.split(rb"(?<=[\n\r])", pending)
                forward(b"".join(line for line in whole if not pattern.search(line)))
            elif pending:  # nothing more for 0.1 s: a progress bar's update, a prompt
                forward(pending)
                pending = b""
            elif stop.is_set():  # restored; a child process may still hold the pipe open
                break
        if pending and not pattern.search(pending):
            forward(pending)

    thread = threading.Thread(target=pump, name="fillgap-ray-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)  # the pipe's write end closes: the pump drains it and ends
        stop.set()
        thread.join(timeout=5)
        os.close(read_end)
        os.close(saved)


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Use the Ray already connected, else join ``address`` (auto, ray://HOST:10001, HOST:6379), else
    start a local Ray. True when this call connected (and so should disconnect)."""
    import ray

    if ray.is_initialized():
        return False
    logging.getLogger("ray").setLevel(logging.WARNING)
    quiet_ray_logs()
    options = {}
    if address is None:
        # Ray runs its workers at nice 15 by default: on a machine shared with other work that
        # starves the actors (importing torch took 59 s instead of 3.5 s here). Our actors are
        # the job, so they run at normal priority.
        options = dict(num_cpus=num_cpus, _system_config={"worker_niceness": 0})
    try:
        ray.init(
            address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, **options
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise FillgapError(f"cannot connect to Ray at {address or 'a new local instance'}: {exc}") from None
    return True


def fill_ray(
    source: Path,
    mask_dir: Path | None,
    out_dir: Path,
    model=None,
    *,
    address: str | None = None,
    actors: int = 2,
    gpus_per_actor: float = 0,
    batch_size: int = 8,
    dilate: int = 0,
    overwrite: bool = False,
    resize_mask: bool = False,
    output_format: str = "auto",
    progress: bool | str = False,
    on_event: Callable[[str, Path, str], None] | None = None,
    progress_every: float = 10.0,
    threads_per_actor: int = 1,
    num_cpus: int | None = None,
    strategy: str = "auto",
    max_side: int | None = None,
    blend: str = "hard",
    runtime: str = "auto",
    invert_mask: bool = False,
    force: bool = False,
    mask_threshold: int | None = None,
) -> FolderReport:
    """The Ray engine: ``source`` a folder (masks in ``mask_dir``, or ``mask_dir`` one mask file for all) or a manifest (.csv/.parquet).
    ``model``: anything ``fillgap.methods.get_method`` takes (a name or a checkpoint path is loaded
    by each actor; a loaded network or method is shipped to each actor once). Returns the same
    report as the local engine."""
    from ..fill import check_blend, check_dilate, check_max_side, check_strategy
    from ..methods import get_method
    from .common import locked_run

    if actors < 1 or batch_size < 1 or gpus_per_actor < 0:
        raise FillgapError("--actors and --batch-size must be at least 1, --gpus-per-actor at least 0")
    check_dilate(dilate), check_blend(blend)
    import numpy as np

    from ..files import adjust_mask

    adjust_mask(np.zeros((1, 1), np.float32), threshold=mask_threshold)  # a bad threshold fails here, once
    settings = dict(
        strategy=check_strategy(strategy),
        max_side=check_max_side(max_side),
        blend=blend,
        invert_mask=invert_mask,
        force=force,
        mask_threshold=mask_threshold,
    )
    get_method(model, runtime)  # a bad name, checkpoint or runtime fails here, once, not in every actor
    out_dir = Path(out_dir)
    run, log, todo = start_run(
        source,
        mask_dir,
        out_dir,
        output_format,
        overwrite,
        progress=progress,
        on_event=on_event,
        every=progress_every,
        warmup=batch_size,
        uris_ok=True,
    )
    if not todo:
        with locked_run(out_dir, log, todo):
            pass
        return log.report
    with locked_run(out_dir, log, todo):
        started = connect(address, num_cpus)
        try:
            with drop_stderr_lines(RAY_NOISE_LINES):
                _execute(
                    todo,
                    log,
                    model,
                    actors,
                    gpus_per_actor,
                    batch_size,
                    dilate,
                    overwrite,
                    resize_mask,
                    threads_per_actor,
                    settings,
                    runtime,
                )
        except (FillgapError, KeyboardInterrupt):
            raise
        except Exception as exc:  # an actor that cannot start, a lost node: one line, outputs kept
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
            raise FillgapError(
                f"the Ray job failed ({type(exc).__name__}: {first[:300]}); the outputs written "
                "so far are kept: run the same command again to resume"
            ) from None
        finally:
            if started:
                import ray

                ray.shutdown()
    return log.report


def _execute(
    todo,
    log: RunLog,
    model,
    actors,
    gpus_per_actor,
    batch_size,
    dilate,
    overwrite,
    resize_mask,
    threads,
    settings,
    runtime,
) -> None:
    import ray
    import ray.data

    for name in ("ray", "ray.data"):  # Ray Data logs each dataset's start and end at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet_ray_logs()  # also when Ray was connected before fill_ray
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the RunLog reports progress
    ctx.enable_auto_log_stats = False
    ctx.max_errored_blocks = -1  # a batch that kills its actor is retried, then reported, not fatal
    rows = [{"picture": str(p), "mask": str(m), "output": str(o)} for p, m, o in todo]
    by_output = {r["output"]: p for r, (p, _, _) in zip(rows, todo)}
    # Small blocks: results stream back (and are logged) while the rest is still running.
    blocks = max(1, min(len(rows), -(-len(rows) // batch_size)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(
        FillActor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
        num_gpus=gpus_per_actor or None,
        fn_constructor_kwargs=dict(
            model=model,
            dilate=dilate,
            overwrite=overwrite,
            resize_mask=resize_mask,
            threads=threads,
            settings=settings,
            runtime=runtime,
        ),
    )
    seen = set()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for output, status, reason in zip(batch["output"], batch["status"], batch["reason"]):
            output = str(output)
            seen.add(output)
            picture = by_output[output]
            out = local_path(output) or output
            if status == STATUS_WRITTEN:
                log.written(out)
            elif status == STATUS_EXISTS:
                log.report.skipped_existing.append(out)
                log._tick()
            else:
                log.failed(picture, str(reason))
    for output, picture in by_output.items():  # rows whose batch died with its actor, every retry
        if output not in seen:
            log.failed(picture, "no result: its worker died (run again to retry)")
