"""What every folder engine shares: the plan (which picture goes to which output), the output
format rule, the failures file, progress output and exit codes.

Pixels outside the hole stay identical by default: a lossy input (JPEG, WebP) is written as PNG
(``a.jpg`` -> ``a.png``); ``output_format="jpg"`` or ``"same"`` re-encodes JPEGs, which changes
pixels outside the hole too.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Callable

from ..api import FolderReport, plan_folder
from ..errors import FillgapError
from ..imageio import IMAGE_SUFFIXES

FAILURES_NAME = "fillgap-failures.csv"  # in the output folder: one row per picture that failed
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".webp"}
OUTPUT_FORMAT_CHOICES = ("auto", "png", "jpg", "webp", "tif", "bmp", "same")

# Exit codes of `fillgap fill` (documented in its --help and the README).
EXIT_OK = 0            # every picture filled or already there
EXIT_ERROR = 1         # nothing ran: bad input folder, output locked, ...
EXIT_USAGE = 2         # command-line usage error (click's own code)
EXIT_SOME_FAILED = 3   # the run went through, some pictures failed: see the failures file


def output_suffix(picture: Path, output_format: str = "auto") -> str:
    """The output's suffix for ``picture``: lossless unless the user asked for a lossy format."""
    if output_format not in OUTPUT_FORMAT_CHOICES:
        raise FillgapError(f"unknown output format '{output_format}' (choose from {', '.join(OUTPUT_FORMAT_CHOICES)})")
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


def plan_outputs(image_dir: Path, mask_dir: Path, out_dir: Path, output_format: str = "auto"
                 ) -> tuple[Plan, list[tuple[Path, str]]]:
    """``plan_folder`` with the output format rule applied; also returns the pictures whose output
    name another picture already takes (``a.jpg`` and ``a.png`` both giving ``a.png``)."""
    plan, taken, clashes = [], {}, []
    for img, msk, out in plan_folder(image_dir, mask_dir, out_dir):
        out = out.with_suffix(output_suffix(img, output_format))
        key = out.with_name(out.name.lower())
        if key in taken:
            clashes.append((img, f"its output {out} is also the output of {taken[key]} (rename one of them, "
                                 "or pass --format same)"))
            continue
        taken[key] = img
        plan.append((img, msk, out))
    return plan, clashes


class RunLog:
    """Collects a run's outcome: the report, the failures file (a row as each failure happens),
    ``on_event("failed" | "skipped", path, why)`` as they happen, and a progress bar (terminal) or
    progress lines (a log file)."""

    def __init__(self, out_dir: Path, total: int, report: FolderReport | None = None, *,
                 progress: bool | str = False, on_event: Callable[[str, Path, str], None] | None = None,
                 every: float = 10.0, stream=None):
        self.out_dir, self.total = Path(out_dir), total
        self.report = report if report is not None else FolderReport()
        self.on_event, self.every = on_event, every
        self.stream = stream if stream is not None else sys.stdout
        self.mode = "bar" if progress is True else (progress or "off")
        self.bar = None
        self.start = self.last = time.monotonic()
        self.done_before = 0
        self._file = None

    @property
    def failures_path(self) -> Path:
        return self.out_dir / FAILURES_NAME

    def begin(self, already_done: int) -> None:
        """Start of the work (the output folder locked): the previous run's failures file goes."""
        self.failures_path.unlink(missing_ok=True)
        self.done_before = already_done
        self.start = self.last = time.monotonic()
        if self.mode == "bar":
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, initial=already_done, unit="img", dynamic_ncols=True)
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
            csv.writer(self._file).writerow([str(picture), why])
            self._file.flush()  # a killed run still leaves the rows of what failed so far
        except OSError:
            pass  # the failures are in the report and on stderr too; a full disk must not stop the run

    def _count(self) -> int:
        r = self.report
        return len(r.written) + len(r.failed) + len(r.skipped_existing)

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
        elif self.mode == "lines":
            self._line(self._count())

    def _line(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = (done - self.done_before) / max(now - self.start, 1e-9)
        left = f", about {(self.total - done) / rate:.0f} s left" if rate > 0 and done < self.total else ""
        pct = 100.0 * done / self.total if self.total else 100.0
        print(f"fillgap: {done}/{self.total} ({pct:.0f} %), {len(self.report.failed)} failed, "
              f"{rate:.1f} pictures/s{left}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._file is not None:
            self._file.close()
            self._file = None


def exit_code(report: FolderReport) -> int:
    return EXIT_SOME_FAILED if report.failed else EXIT_OK


def summary(report: FolderReport, out_dir: Path) -> str:
    line = (f"filled {len(report.written)}, already there {len(report.skipped_existing)}, "
            f"failed {len(report.failed)}")
    if report.skipped:
        line += f", skipped {len(report.skipped)}"
    line += f" -> {out_dir}"
    if report.failed and (Path(out_dir) / FAILURES_NAME).exists():
        line += f" (failures listed in {Path(out_dir) / FAILURES_NAME})"
    return line


def read_failures(out_dir: Path) -> list[tuple[str, str]]:
    """The failures file's rows (path, reason); empty when there is none."""
    path = Path(out_dir) / FAILURES_NAME
    if not path.exists():
        return []
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    return [tuple(r) for r in rows[1:]]
