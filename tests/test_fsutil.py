"""Files whole or absent, one run per folder, temp files of killed runs, odd file names."""

import hashlib
import os

import pytest

from fillgap.errors import FillgapError
from fillgap.fsutil import (
    TEMP_SUFFIX,
    WriteError,
    atomic_write,
    atomic_write_text,
    folder_lock,
    printable,
    remove_stale_temps,
    sha256_file,
)


def test_atomic_write_never_replaces_without_overwrite_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    assert atomic_write(target, b"first") == target and target.read_bytes() == b"first"
    with pytest.raises(FillgapError):
        atomic_write(target, b"second")
    assert target.read_bytes() == b"first"
    atomic_write(target, b"second", overwrite=True)
    assert target.read_bytes() == b"second"
    assert atomic_write_text(tmp_path / "t.txt", "text\n").read_text() == "text\n"
    assert not list(tmp_path.rglob(f"*{TEMP_SUFFIX}"))


def test_a_failed_write_leaves_the_target_as_it_was(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    import fillgap.fsutil

    monkeypatch.setattr(fillgap.fsutil, "_os_write", full_disk)
    with pytest.raises(WriteError):
        atomic_write(target, b"new", overwrite=True)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_one_run_per_folder_and_the_lock_is_released(tmp_path):
    with folder_lock(tmp_path, "fillgap run"):
        with pytest.raises(FillgapError, match="another fillgap run is using"):
            with folder_lock(tmp_path, "fillgap run"):
                pass
    with folder_lock(tmp_path):  # released at the end of the block
        pass


def test_stale_temps_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "x").mkdir()
    stale = [tmp_path / f".a.png{TEMP_SUFFIX}", tmp_path / "x" / f".b.png{TEMP_SUFFIX}"]
    for p in stale:
        p.write_bytes(b"cut")
    keep = tmp_path / "a.png"
    keep.write_bytes(b"whole")
    assert remove_stale_temps(tmp_path) == 2
    assert keep.exists() and not any(p.exists() for p in stale)


def test_printable_shows_odd_bytes_and_sha256_matches_hashlib(tmp_path):
    name = os.fsdecode(b"bad\xff.png")
    shown = printable(tmp_path / name)
    shown.encode("utf-8")  # would raise for the raw surrogate
    assert shown.endswith("bad\\xff.png")
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
