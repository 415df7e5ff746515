"""Fuzzing the picture loaders and the web endpoint with mutated PNG and JPEG bytes.

Seeded and bounded: FILLGAP_FUZZ_CASES cases per target (default 200 for the loaders, a
fifth of that for the server), at most FILLGAP_FUZZ_SECONDS seconds per target, and
CASE_CPU_S seconds of CPU per case (HARD_TIMEOUT_S of wall time). Every case must end as a
valid result or a clean error (a one-line FillgapError; a 4xx JSON answer from the server),
never another exception, a 500, a warning or a hang. Counts go to docs/robustness.md.
"""

from __future__ import annotations

import faulthandler
import io
import os
import random
import re
import struct
import time
import warnings
import zlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from _robustness_record import Recorder
from fillgap.errors import FillgapError
from fillgap.imageio import read_image, read_mask

SEED = 20261125
CASES = int(os.environ.get("FILLGAP_FUZZ_CASES", "200"))
BUDGET_S = float(os.environ.get("FILLGAP_FUZZ_SECONDS", "60"))
CASE_CPU_S = 10.0  # CPU seconds a case may use (a valid fill here takes well under one)
HARD_TIMEOUT_S = 300.0  # wall seconds before a blocked case ends the run


@pytest.fixture(scope="module")
def record():
    rec = Recorder("fuzz")
    yield rec
    rec.save()


# -- seed files ----------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def seed_files() -> list[tuple[str, bytes, tuple[int, int]]]:
    """(name, bytes, (height, width) as the user sees it) of small valid pictures."""
    rng = np.random.default_rng(SEED)
    rgba = rng.integers(0, 256, (9, 13, 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    pal = img.convert("RGB").quantize(8)
    exif = Image.Exif()
    exif[0x0112] = 6
    seeds = [
        ("png-rgb", _encode(img.convert("RGB"), "PNG")),
        ("png-rgba", _encode(img, "PNG")),
        ("png-grey", _encode(img.convert("L"), "PNG")),
        ("png-palette-trns", _encode(pal, "PNG", transparency=0)),
        ("png-16bit", _encode(Image.fromarray(rng.integers(0, 65536, (9, 13), dtype=np.uint16)), "PNG")),
        ("jpeg-rgb", _encode(img.convert("RGB"), "JPEG", quality=90)),
        ("jpeg-progressive", _encode(img.convert("RGB"), "JPEG", quality=90, progressive=True)),
        ("jpeg-grey", _encode(img.convert("L"), "JPEG")),
        ("jpeg-exif-rotated", _encode(img.convert("RGB"), "JPEG", exif=exif)),
        ("jpeg-cmyk", _encode(img.convert("CMYK"), "JPEG")),
    ]
    return [(n, d, (13, 9) if n == "jpeg-exif-rotated" else (9, 13)) for n, d in seeds]


# -- mutations -----------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bitflip(r: random.Random, d: bytearray) -> bytearray:
    for _ in range(r.randint(1, 8)):
        i = r.randrange(len(d))
        d[i] ^= 1 << r.randrange(8)
    return d


def _interesting(r: random.Random, d: bytearray) -> bytearray:
    for _ in range(r.randint(1, 4)):
        d[r.randrange(len(d))] = r.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])
    return d


def _truncate(r: random.Random, d: bytearray) -> bytearray:
    return d[: r.randrange(len(d))]


def _insert_random(r: random.Random, d: bytearray) -> bytearray:
    i = r.randrange(len(d) + 1)
    return d[:i] + bytearray(r.randbytes(r.randint(1, 64))) + d[i:]


def _splice(r: random.Random, d: bytearray) -> bytearray:
    i, j = sorted(r.randrange(len(d) + 1) for _ in range(2))
    if r.random() < 0.5:
        return d[:i] + d[j:]  # a slice deleted
    return d[:j] + d[i:j] + d[j:]  # a slice repeated


def _insert_chunk(r: random.Random, d: bytearray) -> bytearray:
    """A well-formed chunk (PNG, valid CRC) or segment (JPEG) with hostile contents."""
    body = r.randbytes(r.randint(0, 64))
    if d[:4] == b"\x89PNG":
        kind = r.choice(
            [
                b"tEXt",
                b"zTXt",
                b"iTXt",
                b"iCCP",
                b"eXIf",
                b"tRNS",
                b"PLTE",
                b"IDAT",
                b"gAMA",
                b"pHYs",
                b"sBIT",
                b"acTL",
                b"fcTL",
                b"IEND",
                bytes(r.choice(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)),
            ]
        )
        if kind in (b"zTXt", b"iCCP"):
            body = b"name\0\0" + zlib.compress(r.randbytes(r.randint(0, 2000)))
        # after IHDR, before IEND, anywhere (a file cut short by an earlier step has neither)
        pos = r.choice([min(33, len(d)), max(0, len(d) - 12), r.randrange(len(d) + 1)])
        return d[:pos] + bytearray(_png_chunk(kind, body)) + d[pos:]
    marker = r.choice([0xE0, 0xE1, 0xE2, 0xED, 0xEE, 0xFE, 0xDB, 0xC4, 0xC0, 0xDD, 0xDA])
    if marker == 0xE1 and r.random() < 0.7:
        body = b"Exif\0\0" + r.choice([b"MM\0*", b"II*\0"]) + r.randbytes(r.randint(0, 60))
    if marker == 0xC0:
        body = bytes([8]) + struct.pack(">HH", r.randint(0, 65535), r.randint(0, 65535)) + r.randbytes(10)
    seg = bytes([0xFF, marker]) + struct.pack(">H", min(len(body) + 2, 65535)) + body
    pos = 2 if r.random() < 0.6 else r.randrange(2, len(d))
    return d[:pos] + bytearray(seg) + d[pos:]


def _resize_header(r: random.Random, d: bytearray) -> bytearray:
    """Claim another size in the header: huge (the pixel guard) or merely wrong."""
    w = r.choice([0, 1, r.randint(2, 4096), r.randint(12_000, 2**31 - 1)])
    h = r.choice([0, 1, r.randint(2, 4096), r.randint(12_000, 2**31 - 1)])
    if d[:4] == b"\x89PNG":
        ihdr = bytes(d[16 : 20 + 9])
        ihdr = struct.pack(">II", w, h) + ihdr[8:13]
        return d[:8] + bytearray(_png_chunk(b"IHDR", ihdr)) + d[33:]
    for i in range(len(d) - 9):
        if d[i] == 0xFF and d[i + 1] in (0xC0, 0xC1, 0xC2):
            d[i + 5 : i + 9] = struct.pack(">HH", h % 65536, w % 65536)
            break
    return d


MUTATIONS = {
    "bit flips": _bitflip,
    "interesting bytes": _interesting,
    "truncation": _truncate,
    "random bytes inserted": _insert_random,
    "slice deleted or repeated": _splice,
    "chunk/segment inserted": _insert_chunk,
    "header size changed": _resize_header,
}


def mutants(count: int, seed: int):
    """(case number, seed name, mutation names, bytes, seen size): deterministic for a seed."""
    seeds = seed_files()
    names = list(MUTATIONS)
    for i in range(count):
        r = random.Random(seed * 1_000_003 + i)
        name, data, size = seeds[i % len(seeds)]
        steps = [r.choice(names) for _ in range(1 if r.random() < 0.7 else r.randint(2, 3))]
        d = bytearray(data)
        for step in steps:
            if len(d) < 40:
                break
            d = MUTATIONS[step](r, d)
        yield i, name, "+".join(steps), bytes(d), size


# -- running with a time limit ---------------------------------------------------------------


def run_limited(fn, cpu_limit: float):
    """("ok", value) / ("error", FillgapError) / ("crash", exception) / ("hang", seconds).

    In the calling thread (the server's TestClient must be driven from the thread that
    opened it, and a fresh thread per case makes torch set up its thread pool each time).
    A case that spends more than ``cpu_limit`` seconds of CPU counts as a hang (CPU, not wall
    time: the test machine's cores are shared, a busy neighbour must not fail a case); one
    that blocks forever is stopped by faulthandler after HARD_TIMEOUT_S of wall time, which
    prints every thread's stack and ends the run.
    """
    started = time.process_time()
    faulthandler.dump_traceback_later(HARD_TIMEOUT_S, exit=True)
    try:
        result = "ok", fn()
    except FillgapError as exc:
        result = "error", exc
    except Exception as exc:  # noqa: BLE001 - anything else is what we are looking for
        result = "crash", exc
    finally:
        faulthandler.cancel_dump_traceback_later()
    seconds = time.process_time() - started
    return ("hang", round(seconds, 1)) if seconds > cpu_limit else result


class Tally:
    def __init__(self, target: str, requested: int):
        self.target, self.requested, self.started = target, requested, time.monotonic()
        self.outcomes: Counter = Counter()
        self.by_mutation: dict[str, Counter] = {}
        self.messages: Counter = Counter()
        self.failures: list[str] = []

    def add(self, mutation: str, outcome: str, message: str = "", detail: str = "") -> None:
        self.outcomes[outcome] += 1
        for step in mutation.split("+"):
            self.by_mutation.setdefault(step, Counter())[outcome] += 1
        if outcome == "clean error":
            self.messages[message] += 1
        if outcome in ("crash", "hang"):
            self.failures.append(detail)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > BUDGET_S

    def row(self) -> dict:
        return {
            "target": self.target,
            "requested": self.requested,
            "cases": sum(self.outcomes.values()),
            "valid result": self.outcomes["valid result"],
            "clean error": self.outcomes["clean error"],
            "crash": self.outcomes["crash"],
            "hang": self.outcomes["hang"],
            "seconds": round(time.monotonic() - self.started, 1),
            "by_mutation": {k: dict(v) for k, v in sorted(self.by_mutation.items())},
            "messages": self.messages.most_common(12),
            "failures": self.failures[:20],
        }


def _general(message: str, name: str) -> str:
    """An error message without the case's file name and numbers, to count kinds of message."""
    return re.sub(r"\d[\d,]*", "N", message.replace(name, "FILE"))


# -- the loaders ---------------------------------------------------------------------------


def _check_image(a) -> None:
    assert isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert a.shape[0] >= 1 and a.shape[1] >= 1


def _check_mask(a) -> None:
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 2
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("reader", ["read_image", "read_mask"])
def test_fuzz_loader(reader, tmp_path, record):
    fn, check = {"read_image": (read_image, _check_image), "read_mask": (read_mask, _check_mask)}[reader]
    tally = Tally(f"fillgap.imageio.{reader}", CASES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, name, mutation, data, _ in mutants(CASES, SEED):
            if tally.out_of_time():
                break
            path = tmp_path / f"case{i}{'.png' if name.startswith('png') else '.jpg'}"
            path.write_bytes(data)
            caught.clear()
            kind, value = run_limited(lambda: fn(path), CASE_CPU_S)
            where = f"case {i} ({name}, {mutation})"
            if kind == "ok":
                try:
                    check(value)
                    kind = "valid result"
                except AssertionError:
                    kind, value = "crash", f"invalid result {getattr(value, 'shape', value)}"
            if kind == "error":
                msg = str(value)
                kind = "clean error" if msg and "\n" not in msg else "crash"
                tally.add(mutation, kind, _general(msg, str(path)), f"{where}: multi-line message {msg!r}")
            elif kind == "valid result" and caught:
                tally.add(mutation, "crash", detail=f"{where}: warning {caught[0].message}")
            else:
                tally.add(mutation, kind, detail=f"{where}: {kind}: {type(value).__name__}: {value}")
            path.unlink()
    row = tally.row()
    record.add(**row)
    assert row["crash"] == 0 and row["hang"] == 0, row["failures"]
    assert row["cases"] >= min(CASES, 50)  # the time budget must not hide a slow decoder entirely
    assert row["valid result"] > 0 and row["clean error"] > 0  # both paths were exercised


# -- the web endpoint ------------------------------------------------------------------------


def test_fuzz_server_endpoint(record):
    server = pytest.importorskip("fillgap.server")
    if not hasattr(server, "create_app"):
        pytest.skip("fillgap.server has no create_app yet")
    import torch
    from fastapi.testclient import TestClient

    from fillgap.models import create_model

    torch.manual_seed(0)
    app = server.create_app(create_model("ffc-tiny").eval())
    masks = {}
    for h, w in {(9, 13), (13, 9)}:
        m = np.zeros((h, w), np.uint8)
        m[3:6, 4:8] = 255
        masks[(h, w)] = _encode(Image.fromarray(m), "PNG")
    tally = Tally("POST /api/inpaint", max(10, CASES // 5))
    with TestClient(app, raise_server_exceptions=False) as client:
        warm = {"image": ("w.png", seed_files()[0][1], "image/png"), "mask": ("m.png", masks[(9, 13)], "image/png")}
        assert client.post("/api/inpaint", files=warm).status_code == 200  # first-call set-up is not timed
        tally.started = time.monotonic()
        for case in mutants(tally.requested, SEED + 1):
            if tally.out_of_time():
                break
            _server_case(client, tally, masks, *case)
    row = tally.row()
    record.add(**row)
    assert row["crash"] == 0 and row["hang"] == 0, row["failures"]
    assert row["valid result"] > 0 and row["clean error"] > 0


def _server_case(client, tally: Tally, masks: dict, i: int, name: str, mutation: str, data: bytes, size) -> None:
    image, mask = data, masks[size]
    if i % 3 == 2:  # every third case: a good picture and a mutated mask
        image, mask = seed_files()[i % 10][1], data
    form = {"resize_mask": "true"} if i % 2 else {}
    files = {"image": (f"case{i}.png", image, "image/png"), "mask": ("mask.png", mask, "image/png")}
    kind, resp = run_limited(lambda: client.post("/api/inpaint", files=files, data=form), CASE_CPU_S)
    where = f"case {i} ({name}, {mutation}, {'mask' if i % 3 == 2 else 'image'} mutated)"
    if kind != "ok":
        tally.add(mutation, kind, detail=f"{where}: {kind}: {resp!r}")
    elif resp.status_code == 200 and resp.headers.get("content-type") == "image/png":
        Image.open(io.BytesIO(resp.content)).load()
        tally.add(mutation, "valid result")
    elif 400 <= resp.status_code < 500 and isinstance(resp.json().get("detail"), str):
        tally.add(mutation, "clean error", f"{resp.status_code} {_general(resp.json()['detail'], f'case{i}.png')}")
    else:
        tally.add(mutation, "crash", detail=f"{where}: HTTP {resp.status_code} {resp.text[:200]}")
