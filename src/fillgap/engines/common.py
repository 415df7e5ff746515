"""What every folder engine shares: the plan (which picture goes to which output), the output
format rule, the failures file, progress output and exit codes.

Pixels outside the hole stay identical by default: a lossy input (JPEG, WebP) is written as PNG
(``a.jpg`` -> ``a.png``); ``output_format="jpg"`` or ``"same"`` re-encodes JPEGs, which changes
pixels outside the hole too.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import FillgapError, did_you_mean
from ..fsutil import folder_lock, printable, remove_stale_temps
from ..imageio import IMAGE_SUFFIXES, output_state
from .plan import FolderReport, plan_folder

FAILURES_NAME = "fillgap-failures.csv"  # in the output folder: one row per picture that failed
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".webp"}
OUTPUT_FORMAT_CHOICES = ("auto", "png", "jpg", "webp", "tif", "bmp", "same")

# Exit codes of `fillgap fill` (documented in its --help and the README).
EXIT_OK = 0  # every picture filled or already there
EXIT_ERROR = 1  # nothing ran: bad input folder, output locked, ...
EXIT_USAGE = 2  # command-line usage error (click's own code)
EXIT_SOME_FAILED = 3  # the run went through, some pictures failed: see the failures file


def output_suffix(picture: Path, output_format: str = "auto") -> str:
    """The output's suffix for ``picture``: lossless unless the user asked for a lossy format."""
    if output_format not in OUTPUT_FORMAT_CHOICES:
        raise FillgapError(
            f"unknown output format '{output_format}'{did_you_mean(output_format, OUTPUT_FORMAT_CHOICES)} "
            f"(choose from {', '.join(OUTPUT_FORMAT_CHOICES)})"
        )
    if output_format == "same":
        return picture.suffix
    if output_format == "auto":
        return ".png" if picture.suffix.lower() in LOSSY_SUFFIXES else picture.suffix
    return "." + output_format


def skipped_entries(image_dir: Path) -> list[tuple[Path, str]]:
    """Entries under ``image_dir`` a run will not fill, with why: folders named like pictures and
    links to nothing (both silently ignored before)."""
    skipped = []
    for p in sorted(Path(image_dir).rglob("*")):
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.is_dir():
            skipped.append((p, "a folder, not a picture"))
        elif not p.exists():
            skipped.append((p, "a link to nothing"))
    return skipped


Plan = list[tuple[Path, "Path | None", Path]]


def plan_outputs(
    image_dir: Path, mask_dir: Path, out_dir: Path, output_format: str = "auto"
) -> tuple[Plan, list[tuple[Path, str]]]:
    """``plan_folder`` with the output format rule applied; also returns the pictures whose output
    name another picture already takes (``a.jpg`` and ``a.png`` both giving ``a.png``)."""
    plan, taken, clashes = [], {}, []
    for img, msk, out in plan_folder(image_dir, mask_dir, out_dir):
        out = out.with_suffix(output_suffix(img, output_format))
        key = out.with_name(out.name.lower())
        if key in taken:
            clashes.append(
                (
                    img,
                    f"its output {out} is also the output of {taken[key]} (rename one of them, or pass --format same)",
                )
            )
            continue
        taken[key] = img
        plan.append((img, msk, out))
    return plan, clashes


MANIFEST_SUFFIXES = {".csv", ".parquet"}


def is_uri(path) -> bool:
    return "://" in str(path)


def local_path(path) -> Path | None:
    """A local path for a plain path or a file:// URI; None for any other URI (s3://, gs://, ...)."""
    text = str(path)
    if text.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(text).path))
    return None if is_uri(text) else Path(text)


@dataclass
class PlannedRun:
    """What a run will do: (picture, mask or None, output) rows, pictures that already failed
    while planning, and entries that are not pictures."""

    rows: list = field(default_factory=list)
    failed: list[tuple[object, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _climbs_out(relative: str) -> bool:
    """A relative path that leaves its folder (``../x``, ``a/../../x``); absolute paths are not relative."""
    if Path(relative).is_absolute():
        return False
    return os.path.normpath(relative).split(os.sep)[0] == ".."


def read_manifest(manifest: Path, out_dir: Path, output_format: str = "auto") -> PlannedRun:
    """A CSV (header ``picture,mask,output``) or Parquet file of the same columns. ``output`` may be
    left out (the picture's name in ``out_dir``), relative (to ``out_dir``, and inside it: a row whose
    output climbs out with ``..`` fails) or absolute; relative pictures and masks are relative to the
    manifest's folder. Any column may hold a URI (file://, s3://, ...). Two rows whose outputs are
    one file refuse the whole manifest (rows are numbered from 1, after the header)."""
    manifest = Path(manifest)
    try:
        if manifest.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(manifest).to_pylist()
        else:
            with open(manifest, newline="", encoding="utf-8") as fh:
                table = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise FillgapError(f"manifest not found: {manifest}") from None
    except Exception as exc:  # unreadable CSV or Parquet: one line
        raise FillgapError(f"cannot read manifest {manifest}: {exc}") from None
    if table and not {"picture", "mask"} <= set(table[0]):
        raise FillgapError(
            f"manifest {manifest} needs the columns picture, mask (and optionally output); "
            f"it has {', '.join(map(str, table[0]))}"
        )
    base, run = manifest.parent, PlannedRun()
    taken = {}  # the output's real path -> (row number, how the row names it, the output)

    def resolve(value, folder):
        value = str(value or "").strip()
        if not value:
            return None
        if is_uri(value):
            return local_path(value) or value
        return Path(value) if Path(value).is_absolute() else folder / value

    for number, row in enumerate(table, 1):
        picture, mask = resolve(row.get("picture"), base), resolve(row.get("mask"), base)
        if picture is None:
            continue
        name = PurePosixPath(str(picture)).name
        out = resolve(row.get("output"), Path(out_dir))
        if isinstance(out, Path) and _climbs_out(str(row.get("output")).strip()):
            run.failed.append(
                (
                    picture,
                    f"its output {row.get('output')} is outside -o {out_dir} "
                    "(a relative output stays inside it; give an absolute path to write elsewhere)",
                )
            )
            continue
        if out is None:
            out = Path(out_dir) / name
            out = out.with_suffix(output_suffix(out, output_format))
        # One file under two names (`a.png`, `x/../a.png`): the second row would be "already
        # there" on a rerun, never filled, or replace the first with --overwrite. Case-sensitive,
        # as the file system is on Linux.
        key = os.path.realpath(out) if isinstance(out, Path) else out
        named = (
            f"output {str(row.get('output')).strip()}"
            if str(row.get("output") or "").strip()
            else f"picture {str(row.get('picture')).strip()}"
        )
        if key in taken:
            first, first_named, first_out = taken[key]
            raise FillgapError(
                f"manifest {manifest}: row {first} ({first_named}) and row {number} ({named}) "
                f"write the same file {first_out}: give each row its own output"
            )
        taken[key] = (number, named, out)
        run.rows.append((picture, mask, out))
    return run


def plan_run(source: Path, mask_dir: Path | None, out_dir: Path, output_format: str = "auto") -> PlannedRun:
    """The plan of a folder (pictures under ``source``, masks from ``mask_dir``: a folder, or one
    mask file for every picture) or of a manifest file."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(source, out_dir, output_format)
    if mask_dir is None:
        raise FillgapError("a folder input needs --mask-dir (a mask per picture) or --mask (one for all)")
    rows, clashes = plan_outputs(source, Path(mask_dir), Path(out_dir), output_format)
    return PlannedRun(rows, clashes, skipped_entries(source))


def start_run(
    source: Path,
    mask_dir: Path | None,
    out_dir: Path,
    output_format: str,
    overwrite: bool,
    *,
    progress,
    on_event,
    every: float,
    warmup: int,
    uris_ok: bool = False,
) -> tuple[PlannedRun, "RunLog", list]:
    """A run's plan, its log and the rows left to do (``triage``): the same start for both engines."""
    run = plan_run(Path(source), mask_dir, out_dir, output_format)
    log = RunLog(
        out_dir, len(run.rows) + len(run.failed), progress=progress, on_event=on_event, every=every, warmup=warmup
    )
    return run, log, triage(run, log, overwrite, uris_ok=uris_ok)


def triage(run: PlannedRun, log: "RunLog", overwrite: bool, uris_ok: bool = False) -> list:
    """The rows left to do; the others go to the log: failures (no mask, output is an input), and
    outputs already there (a resumed run). Rows with URIs are checked by whoever writes them."""
    log.skipped(run.skipped)
    for picture, why in run.failed:
        log.failed(picture, why, planning=True)
    inputs = {p.resolve() for row in run.rows for p in row[:2] if isinstance(p, Path)}
    todo = []
    for img, msk, out in run.rows:
        if msk is None:
            log.failed(img, "no mask", planning=True)
        elif not uris_ok and not all(isinstance(p, Path) for p in (img, msk, out)):
            log.failed(img, "a URI (s3://, ...) needs --engine ray", planning=True)
        elif isinstance(out, Path) and out.resolve() in inputs:
            log.failed(img, f"output {out} is an input file", planning=True)
        elif isinstance(out, Path) and (link := link_out_of(out, log.out_dir)) is not None:
            log.failed(
                img,
                f"its output {out} is outside -o {log.out_dir}: {link} is a link out of it "
                "(a folder run never writes through links out of -o)",
                planning=True,
            )
        elif isinstance(out, Path) and not overwrite:
            state, why = output_state(out)
            if state == "whole":
                log.report.skipped_existing.append(out)  # written by an earlier run: resume
            elif state == "foreign":
                log.failed(img, not_ours(out, why), planning=True)
            else:  # missing, or cut short: (re)done
                todo.append((img, msk, out))
        else:
            todo.append((img, msk, out))
    return todo


def not_ours(out, why: str) -> str:
    """Why a row fails whose output exists and is not a fillgap output (``imageio.output_state``)."""
    return f"output exists: {out} ({why}, not a picture fillgap wrote; pass --overwrite to replace it)"


def link_out_of(out: Path, out_dir: Path) -> Path | None:
    """For an output named inside ``out_dir``: the link on its way that leads out of ``out_dir``
    (None when its real folder is inside). An output named elsewhere (a manifest's absolute
    output) is written where it says."""
    root = os.path.abspath(out_dir)
    named = os.path.abspath(out)
    if os.path.commonpath([named, root]) != root:
        return None
    real_root = os.path.realpath(root)
    # Not abspath's normpath: the OS reads `link/..` as the parent of the link's target.
    parent = Path(out).parent
    if os.path.commonpath([os.path.realpath(os.path.join(os.getcwd(), parent)), real_root]) == real_root:
        return None
    for above in [parent, *parent.parents]:  # the first link on the way, to name it
        if above.is_symlink():
            return above
    return parent


class Eta:
    """Seconds left in a folder run, from the pace since the warm-up ended.

    The first pictures' time holds loading the model and the network's first (warm-up) call:
    counted from the start of the run, a run that took 84 s was first estimated at 524 s. So the
    clock starts when the first ``warmup`` pictures have finished (an engine passes its batch
    size: a batch's pictures come out together, and seven pictures in no time after the first
    would halve the next estimate), and the pace is the average since then, not the latest gap.
    No estimate until ``min_pictures`` more have finished and ``min_seconds`` have passed."""

    def __init__(
        self, clock: Callable[[], float] | None = None, warmup: int = 1, min_pictures: int = 2, min_seconds: float = 2.0
    ):
        self.clock = clock or time.monotonic
        self.warmup, self.min_pictures, self.min_seconds = max(1, warmup), min_pictures, min_seconds
        self.finished_count = 0
        self.start: float | None = None  # when the warm-up ended
        self.since_start = 0  # pictures finished after that

    def finished(self) -> None:
        self.finished_count += 1
        if self.finished_count == self.warmup:
            self.start = self.clock()
        elif self.start is not None:
            self.since_start += 1

    def seconds_left(self, remaining: int) -> float | None:
        if self.start is None or remaining <= 0 or self.since_start < self.min_pictures:
            return None
        elapsed = self.clock() - self.start
        if elapsed < self.min_seconds:
            return None
        return remaining * elapsed / self.since_start

    def rate(self) -> float | None:
        """Pictures per second since the warm-up."""
        elapsed = self.clock() - self.start if self.start is not None else 0.0
        return self.since_start / elapsed if self.since_start and elapsed > 0 else None


class RunLog:
    """Collects a run's outcome: the report, the failures file (a row as each failure happens),
    ``on_event("failed" | "skipped", path, why)`` as they happen, and a progress bar (terminal) or
    progress lines (a log file)."""

    def __init__(
        self,
        out_dir: Path,
        total: int,
        report: FolderReport | None = None,
        *,
        progress: bool | str = False,
        on_event: Callable[[str, Path, str], None] | None = None,
        every: float = 10.0,
        stream=None,
        warmup: int = 1,
    ):
        self.out_dir, self.total = Path(out_dir), total
        self.report = report if report is not None else FolderReport()
        self.on_event, self.every = on_event, every
        self.stream = stream if stream is not None else sys.stdout
        self.mode = "bar" if progress is True else (progress or "off")
        self.bar = None
        self.start = self.last = time.monotonic()
        self.done_before = 0
        self.warmup = warmup  # pictures of the first network call (Eta)
        self.eta = Eta(warmup=warmup)
        self._file = None

    @property
    def failures_path(self) -> Path:
        return self.out_dir / FAILURES_NAME

    def begin(self, already_done: int) -> None:
        """Start of the work (the output folder locked): the previous run's failures file goes."""
        self.failures_path.unlink(missing_ok=True)
        self.done_before = already_done
        self.start = self.last = time.monotonic()
        self.eta = Eta(warmup=self.warmup)
        if self.mode == "bar":
            from tqdm import tqdm

            # tqdm's own estimate counts from the start (model loading included): ours instead (Eta)
            self.bar = tqdm(
                total=self.total,
                initial=already_done,
                unit="img",
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            )
        elif self.mode == "lines":
            self._line(already_done, force=True)
        for img, why in self.report.failed:  # failures found while planning
            self._write_row(img, why)

    def skipped(self, entries: list[tuple[Path, str]]) -> None:
        self.report.skipped.extend(entries)
        if self.on_event is not None:
            for entry, why in entries:
                self.on_event("skipped", entry, why)

    def written(self, path: Path) -> None:
        self.report.written.append(path)
        self._tick()

    def failed(self, picture: Path, why: str, planning: bool = False) -> None:
        self.report.failed.append((picture, why))
        if self.on_event is not None:
            self.on_event("failed", picture, why)
        if not planning:
            self._write_row(picture, why)
            self._tick()

    def _write_row(self, picture: Path, why: str) -> None:
        try:
            if self._file is None:
                self._file = open(self.failures_path, "w", newline="", encoding="utf-8")
                csv.writer(self._file).writerow(["path", "reason"])
            # printable: a non-UTF-8 file name would stop the run here (UnicodeEncodeError)
            csv.writer(self._file).writerow([printable(picture), printable(why)])
            self._file.flush()  # a killed run still leaves the rows of what failed so far
        except OSError:
            pass  # the failures are in the report and on stderr too; a full disk must not stop the run

    def _count(self) -> int:
        r = self.report
        return len(r.written) + len(r.failed) + len(r.skipped_existing)

    def _tick(self) -> None:
        self.eta.finished()
        if self.bar is not None:
            left = self.eta.seconds_left(self.total - self._count())
            self.bar.set_postfix_str(f"about {left:.0f} s left" if left is not None else "", refresh=False)
            self.bar.update(1)
        elif self.mode == "lines":
            self._line(self._count())

    def _line(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate, left = self.eta.rate(), self.eta.seconds_left(self.total - done)
        pace = f", {rate:.1f} pictures/s" if rate is not None else ""
        left = f", about {left:.0f} s left" if left is not None else ""
        pct = 100.0 * done / self.total if self.total else 100.0
        print(
            f"fillgap: {done}/{self.total} ({pct:.0f} %), {len(self.report.failed)} failed{pace}{left}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # rows a full disk refused: they are in the report and on stderr
                pass
            self._file = None


def exit_code(report: FolderReport) -> int:
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


def summary(report: FolderReport, out_dir: Path) -> str:
    line = f"filled {len(report.written)}, already there {len(report.skipped_existing)}, failed {len(report.failed)}"
    if report.skipped:
        line += f", skipped {len(report.skipped)}"
    line += f" -> {out_dir}"
    if report.failed and (Path(out_dir) / FAILURES_NAME).exists():
        line += f" (failures listed in {Path(out_dir) / FAILURES_NAME})"
    return printable(line)


def read_failures(out_dir: Path) -> list[tuple[str, str]]:
    """The failures file's rows (path, reason); empty when there is none."""
    path = Path(out_dir) / FAILURES_NAME
    if not path.exists():
        return []
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    return [tuple(r) for r in rows[1:]]


# -- the run: its output folder locked, its log written ------------------------------------
def _output_lock(out_dir: Path):
    """An exclusive lock on the output folder for the run (released by the OS if the run dies)."""
    return folder_lock(out_dir, "fillgap run")


def _remove_stale_temps(out_dir: Path) -> int:
    """Temp files of writes cut short by a SIGKILL (safe: we hold the folder's lock)."""
    return remove_stale_temps(out_dir)


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM handled like Ctrl-C, so the writes in flight finish (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def locked_run(out_dir: Path, log: RunLog, todo: list):
    """The output folder created and locked, stale temp files gone, the log started (when there
    is anything to do or to record)."""
    if not todo and not log.report.failed:
        yield
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FillgapError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    with _output_lock(out_dir), _sigterm_as_interrupt():
        _remove_stale_temps(out_dir)
        log.begin(log.total - len(todo))
        try:
            yield
        finally:
            log.close()
