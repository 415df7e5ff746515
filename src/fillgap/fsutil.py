"""Files that are either whole or absent, and folders used by one run at a time.

- ``atomic_write``: every file fillgap writes (pictures, checkpoints, weights, reports, prepared
  data) goes through it. The contents are complete in memory first; they are written with
  ``os.write`` (a short write is retried, so a full disk surfaces as an error instead of a
  silently cut file), fsynced, the size on disk is checked, and only then is the temp file
  renamed over the target. A failure leaves the target as it was.
- ``folder_lock``: one fillgap run per folder (batch output, training run).
- ``remove_stale_temps``: the temp files a SIGKILL can leave behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from .errors import FillgapError

LOCK_NAME = ".fillgap-lock"
TEMP_SUFFIX = ".fillgap-tmp"
TEMP_GLOB = f".*{TEMP_SUFFIX}"
# Errors that mean "the disk is full" (a folder run stops after a few of them in a row).
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})

_os_write = os.write  # the tests replace this to simulate short writes and full disks


class WriteError(FillgapError):
    """A file could not be written completely; ``errno`` says why (``DISK_FULL`` for a full disk)."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_

    @property
    def disk_full(self) -> bool:
        return self.errno in DISK_FULL


def printable(text: object) -> str:
    """``text`` (a path, a message naming one) safe for any UTF-8 output: a file name that is
    not UTF-8 (b'bad\\xff.png' reaches Python as 'bad\\udcff.png', which UTF-8 cannot encode)
    shows its odd bytes as ``\\xff``."""
    text = str(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes the file system holds
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _write_all(fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        n = _os_write(fd, data[done:])
        if n <= 0:  # a write that makes no progress would loop for ever
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n


def atomic_write(path: str | os.PathLike, data: bytes | bytearray | memoryview, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temp file beside it, then rename; returns ``path``.

    Raises ``WriteError`` (a ``FillgapError``) when the data cannot be written whole; the target
    is then untouched and the temp file removed. Without ``overwrite`` an existing file is never
    replaced, even one that appeared while this one was being written.
    """
    path = Path(path)
    view = memoryview(data).cast("B")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create the folder {path.parent}: {_reason(exc)}", exc.errno) from None
    # Hidden name without an image suffix: folder listings and resumed batches skip it.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        # 0o666: the umask sets the permissions, as for any new file (mkstemp would make it 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise WriteError(f"cannot write to the folder {path.parent}: {_reason(exc)}", exc.errno) from None
    try:
        try:
            _write_all(fd, view)
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size != len(view):
            raise WriteError(f"cannot write {path}: only {size:,} of {len(view):,} bytes reached the disk", errno.EIO)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: no race with another writer
            except FileExistsError:
                raise FillgapError(f"output exists: {path} (pass --overwrite to replace it)") from None
            except OSError:  # a file system without hard links
                if path.exists():
                    raise FillgapError(f"output exists: {path} (pass --overwrite to replace it)") from None
                os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {_reason(exc)}", exc.errno) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    return atomic_write(path, text.encode("utf-8"), overwrite)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "fillgap run", name: str = LOCK_NAME, wait: bool = False):
    """Hold an exclusive lock on ``folder`` (created if needed) for the ``with`` block.

    ``what`` names the holder in the refusal; with ``wait`` there is no refusal: the lock is
    waited for (a cache that several processes fill). The lock is an flock on ``folder/name``: the OS releases it when the process dies,
    so a killed run never locks anyone out. The file itself is never deleted: deleting it while
    held would let a second run lock a new file of the same name while the first still runs.
    """
    folder = Path(folder)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")
    except OSError as exc:
        raise WriteError(f"cannot write to the folder {folder}: {_reason(exc)}", exc.errno) from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FillgapError(f"another {what} is using {folder} (lock {path}): wait for it to end") from None
        yield


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = True) -> int:
    """Delete the temp files of writes cut short by a kill; call it while holding ``folder_lock``."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.rglob(TEMP_GLOB) if recursive else folder.glob(TEMP_GLOB):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
