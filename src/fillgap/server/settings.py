"""The server's settings (``ServerSettings``) and the errors its parts share."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path


from ..methods import DEFAULT_RUNTIME


STATIC_DIR = Path(__file__).with_name("static")


_DRAIN_BYTES = 64 * 1024 * 1024


log = logging.getLogger("fillgap.server")


@dataclass
class ServerSettings:
    max_upload_bytes: int = 50 * 1024 * 1024  # a 12 MP result PNG sent back for the next fill fits
    max_pixels: int = 40_000_000  # about 7700 x 5200
    save_dir: Path | None = None
    # Fills run one at a time by default: on a few cores, two concurrent torch calls only
    # split the same cores, while decoding and encoding still overlap across requests.
    workers: int = 1
    # torch intra-op threads per fill; None: fillgap.runtime.threads' policy ($FILLGAP_THREADS,
    # else the cores other programs leave free, measured per fill).
    threads: int | None = None
    runtime: str = DEFAULT_RUNTIME  # see fillgap.methods: auto, torch, torch-bf16, onnx
    max_dilate: int = 200
    model_source: str = "given"  # shown by /api/models
    # Defaults of the fill (fillgap.fill.inpaint); the form fields of the same names override them.
    strategy: str = "auto"
    max_side: int | None = None
    blend: str = "hard"
    # Slow and stalled clients (seconds): see the module's docstring.
    header_timeout: float = 10.0
    body_idle_timeout: float = 15.0
    request_timeout: float = 120.0
    # Pixels of the pictures being decoded, filled or encoded at once, all requests together
    # (None: 2 x max_pixels); one request always gets through. A 36 MP picture takes about
    # 0.5 GB through decode, fill and encode, so this bounds the server's memory.
    max_pixels_in_flight: int | None = None
    # Upload bytes held in memory by all requests together (None: 4 x max_upload_bytes).
    max_buffered_bytes: int | None = None
    retry_after: int = 5  # seconds, sent with every 503
    # Host headers answered (None: any). `fillgap serve` sets the bound address and localhost, so a
    # web page cannot reach a local server through a DNS name that points at it (DNS rebinding).
    allowed_hosts: tuple[str, ...] | None = None
    # Origins whose pages may POST here besides the server's own (a browser sends Origin with
    # every cross-site form post and fetch; clients without one, such as curl, are not affected).
    allow_origins: tuple[str, ...] = ()
    # Open connections: beyond this many, the oldest without a request in progress are closed to
    # make room, and requests in progress beyond it get 503 (see server._protocol).
    max_connections: int = 512


class HTTPProblem(Exception):
    """An error answered as JSON ``{"detail": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _ClientGone(Exception):
    """The client hung up: nobody is left to answer (logged once, no traceback)."""


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


MAX_OTHER_METHODS = 2  # registered methods besides the loaded one kept in memory for `model` requests
