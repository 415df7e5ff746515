"""The web app: a FastAPI server with one page to brush a mask, fill it and download the result.

``fillgap serve`` runs it; ``create_app(model, settings)`` builds it (tests build their own).

API (OpenAPI docs at ``/docs``):
- ``POST /api/inpaint``: multipart form with ``image`` (a picture) and ``mask`` (white or
  opaque = hole, black or transparent = keep) of the same size, optional ``dilate`` (pixels)
  and ``resize_mask`` (``true`` scales a mask of another size to the picture; without it a
  size mismatch is a 422, because a silently stretched mask fills the wrong place), and
  ``strategy``, ``max_side``, ``blend`` (defaults from ``fillgap serve``'s options).
  Answers the filled picture as PNG (alpha kept). The fill is ``fillgap.fill.inpaint``, the
  same pipeline as the CLI: only windows around the holes are processed, so a 12 MP photo with
  a small mask costs a small call; pixels outside the hole come back bit-identical.
- ``GET /api/models``: the loaded model and its metadata; ``GET /health``.

Errors are JSON ``{"detail": "<one line>"}``: 413 (upload or picture too large), 415 (not a
multipart form, or a part that is declared as something other than a picture), 422 (missing
field, unreadable picture, wrong mask size, bad field value).

Safety: the body is read into memory with a byte cap (nothing spools to disk), the pixel
count is checked from the header before decoding, no file is written unless ``save_dir`` is
set, and then only under generated names inside it.

Staying up under slow or hostile clients (``ServerSettings``): request headers must arrive
within ``header_timeout`` s and the body without a pause over ``body_idle_timeout`` s (else
408 and the connection closes), a request gets ``request_timeout`` s in all; the pictures being
worked on hold at most ``max_pixels_in_flight`` pixels together (read from their headers before
decoding) and uploads buffered in memory at most ``max_buffered_bytes``: beyond either, 503
with Retry-After at once, instead of a queue that grows with memory. A fill is stopped
(``fillgap.cancel``, between windows and network layers) when its client hangs up or the
request's time runs out (503); an answer the client has not taken by then is dropped with its
connection. Beyond ``max_connections`` open connections the oldest without a request in progress
are closed to make room (half-open connections cannot lock clients out), and requests in
progress beyond it get 503 with Retry-After. Each request gets one access-log line (logger
``fillgap.access``), each hang-up one line.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as _dt
import functools
import io
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from python_multipart.multipart import MultipartParser, parse_options_header

from .cancel import Cancelled, CancelToken, cancel_on
from .errors import FillgapError
from .fill import (BLENDS, STRATEGIES, check_blend, check_max_side, check_strategy, inpaint,
                   resize_mask)
from .fill.strategies import MIN_MAX_SIDE
from .imageio import (DECODERS, ImageTooLargeError, Picture, encode_png, read_mask_bytes, read_picture_bytes,
                      write_image)
from .methods import DEFAULT_RUNTIME, FillMethod, get_method
from .models import InpaintModel
from .runtime.threads import resolve_threads, set_threads

STATIC_DIR = Path(__file__).with_name("static")
_DRAIN_BYTES = 64 * 1024 * 1024
log = logging.getLogger("fillgap.server")
access_log = logging.getLogger("fillgap.access")


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


def _client(request: Request) -> str:
    c = request.client
    return f"{c.host}:{c.port}" if c else "-"


def _host_name(host: str) -> str:
    """A Host header or an origin's host without its port, lower case ([::1]:8000 -> [::1])."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def default_allowed_hosts(bound: str) -> tuple[str, ...] | None:
    """The Host names ``fillgap serve`` answers by default: the bound address and localhost's
    names; None (any) when bound to every address, where the machine's names are not known."""
    if bound in ("0.0.0.0", "::", ""):
        return None
    name = f"[{bound}]" if ":" in bound else bound
    return tuple(dict.fromkeys((name.lower(), "localhost", "127.0.0.1", "[::1]")))


class _Guard:
    """Refuses a request whose Host is not allowed (400), a POST from another site's page (403) and
    any request beyond ``max_connections`` in progress (503 with Retry-After), before its body is
    read (pure ASGI)."""

    def __init__(self, app, settings: ServerSettings):
        self.app, self.settings = app, settings
        self.active = 0  # requests in progress; touched only from the event loop

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        allowed = self.settings.allowed_hosts
        if allowed is not None and _host_name(host) not in allowed:
            return await _refuse(send, 400, f"host '{host[:80]}' is not served here (fillgap serve --allowed-hosts)")
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin is not None:
            own = {f"http://{host.lower()}", f"https://{host.lower()}"}
            if origin.lower() not in own and origin not in self.settings.allow_origins:
                return await _refuse(send, 403, f"requests from pages of '{origin[:80]}' are refused "
                                                "(fillgap serve --allow-origin)")
        if self.active >= self.settings.max_connections:
            wait = str(self.settings.retry_after)
            # no Connection: close: uvicorn reads the unread body away, where a close would reset the
            # connection under a client still sending and lose this answer
            return await _refuse(send, 503, f"busy: {self.active} requests in progress; try again in {wait} s",
                                 [(b"retry-after", wait.encode())])
        self.active += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _refuse(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class _AccessLog:
    """One line per request: client, method, path, status, bytes sent, seconds (pure ASGI, so
    the app's own reads of the body and of a hang-up are untouched)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, seen = time.perf_counter(), {"status": 0, "bytes": 0}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            c = scope.get("client")
            access_log.info('%s "%s %s" %s %d %.3fs', f"{c[0]}:{c[1]}" if c else "-", scope["method"],
                            scope["path"], seen["status"] or "-", seen["bytes"], time.perf_counter() - started)


_libc = None


def _trim_memory() -> None:
    """Give freed heap pages back to the system after a big picture (glibc keeps them otherwise,
    and a server's resident memory creeps up fill after fill)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):
        _libc = False  # not glibc: nothing to do


@dataclass
class _Part:
    filename: str | None = None
    content_type: str = ""
    data: bytearray = field(default_factory=bytearray)


MAX_PARTS = 32  # the form has 8 fields; a million one-byte parts took 46 s to parse


class _TooManyParts(Exception):
    pass


def parse_multipart(body: bytes, content_type: str) -> dict[str, _Part]:
    """The parts of a multipart/form-data body, in memory (first part of each name wins; at most
    ``MAX_PARTS``: parsing stops at the next one).

    python-multipart's streaming parser, fed an already size-capped body, so a large
    upload never rolls over to a temporary file the way Starlette's form parser does.
    """
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data":
        raise HTTPProblem(415, "send a multipart/form-data form with the fields 'image' and 'mask'")
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPProblem(422, "malformed multipart form: no boundary in the Content-Type header")
    parts: dict[str, _Part] = {}
    state = {"part": None, "hname": b"", "hvalue": b"", "headers": {}}

    def on_part_begin():
        state["count"] = state.get("count", 0) + 1
        if state["count"] > MAX_PARTS:
            raise _TooManyParts
        state["part"], state["headers"] = _Part(), {}

    def on_header_field(data, start, end):
        state["hname"] += data[start:end]

    def on_header_value(data, start, end):
        state["hvalue"] += data[start:end]

    def on_header_end():
        state["headers"][state["hname"].lower()] = state["hvalue"]
        state["hname"], state["hvalue"] = b"", b""

    def on_headers_finished():
        part = state["part"]
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        fname = disp.get(b"filename")
        part.filename = fname.decode("utf-8", "replace") if fname is not None else None
        part.content_type = state["headers"].get(b"content-type", b"").decode("latin-1").strip().lower()
        state["name"] = name

    def on_part_data(data, start, end):
        state["part"].data += data[start:end]

    def on_part_end():
        parts.setdefault(state["name"], state["part"])

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    })
    try:
        parser.write(body)
        parser.finalize()
    except _TooManyParts:
        raise HTTPProblem(413, f"the form has more than {MAX_PARTS} parts (fillgap's has 8 fields)") from None
    except Exception as exc:  # python-multipart raises its own error types on bad input
        raise HTTPProblem(422, f"malformed multipart form ({type(exc).__name__})") from None
    return parts


def _check_picture_part(parts: dict[str, _Part], name: str) -> _Part:
    part = parts.get(name)
    if part is None or not part.data:
        raise HTTPProblem(422, f"no '{name}' file in the form (send the fields 'image' and 'mask')")
    # Browsers and curl send image/*, or octet-stream for types they do not know; anything
    # else (text/plain, application/pdf, ...) was chosen by mistake.
    ctype = part.content_type.split(";")[0].strip()
    if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise HTTPProblem(415, f"'{name}' must be a picture, got a file of type {ctype}")
    return part


def _int_field(parts: dict[str, _Part], name: str, default: int, low: int, high: int) -> int:
    if name not in parts:
        return default
    text = bytes(parts[name].data).decode("utf-8", "replace").strip()
    try:
        value = int(text)
    except ValueError:
        raise HTTPProblem(422, f"'{name}' must be a whole number, got '{text[:20]}'") from None
    if not low <= value <= high:
        raise HTTPProblem(422, f"'{name}' must be between {low} and {high}, got {value}")
    return value


def _choice_field(parts: dict[str, _Part], name: str, default: str, choices: tuple[str, ...]) -> str:
    if name not in parts:
        return default
    text = bytes(parts[name].data).decode("utf-8", "replace").strip().lower()
    if text not in choices:
        raise HTTPProblem(422, f"'{name}' must be one of {', '.join(choices)}, got '{text[:20]}'")
    return text


def _bool_field(parts: dict[str, _Part], name: str) -> bool:
    if name not in parts:
        return False
    text = bytes(parts[name].data).decode("utf-8", "replace").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise HTTPProblem(422, f"'{name}' must be true or false, got '{text[:20]}'")


def _model_info(method: FillMethod, source: str, metadata: dict[str, str]) -> dict:
    net = getattr(method, "model", None)
    return {
        "name": method.name,
        "kind": method.kind,
        "settings": getattr(net, "registry_kwargs", {}),
        "parameters": method.parameters_count(),
        "source": source,
        "fixed_size": method.fixed_size,
        "max_side": method.max_side,
        "metadata": metadata,
        "loaded": True,
    }


def _load(model: FillMethod | InpaintModel | str | Path | None,
          runtime: str = DEFAULT_RUNTIME) -> tuple[FillMethod, str, dict[str, str]]:
    from .checkpoint import weights_metadata

    method = get_method(model, runtime)
    if isinstance(model, (FillMethod, InpaintModel)):
        return method, "given", {}
    meta, path = {}, Path(method.source)
    if method.kind == "network" and path.suffix == ".safetensors" and path.is_file():
        hidden = ("model_name", "model_kwargs", "tensor_sha256")
        meta = {k: v for k, v in weights_metadata(path).items() if k not in hidden}
    # a file's name only: /api/models must not tell a client where the server's files are
    source = "default" if model is None else (path.name if path.is_absolute() or path.exists() else method.source)
    return method, source, meta


def create_app(model: FillMethod | InpaintModel | str | Path | None = None,
               settings: ServerSettings | None = None) -> FastAPI:
    """The app, with its method loaded now (once): a name, a network, a checkpoint path, or None (default)."""
    settings = settings or ServerSettings()
    check_strategy(settings.strategy), check_max_side(settings.max_side), check_blend(settings.blend)
    net, source, metadata = _load(model, settings.runtime)
    info = _model_info(net, source, metadata)
    save_dir = None
    if settings.save_dir is not None:
        save_dir = Path(settings.save_dir).expanduser().resolve()
        if save_dir.exists() and not save_dir.is_dir():
            raise FillgapError(f"--save-dir is not a folder: {save_dir}")
        save_dir.mkdir(parents=True, exist_ok=True)
    if settings.workers < 1:
        raise FillgapError(f"workers must be at least 1, got {settings.workers}")
    if settings.threads is not None and settings.threads < 1:
        raise FillgapError(f"--threads must be at least 1, got {settings.threads}")
    # The network is read-only at inference (eval, no_grad), so threads may share it; the
    # limiter only bounds how many fills run at once. Decoding gets its own small bound: a
    # 40 MP picture is 120 MB as pixels, and its mask 160 MB as float32.
    limiter = anyio.CapacityLimiter(settings.workers)
    max_in_flight = settings.max_pixels_in_flight or 2 * settings.max_pixels
    max_buffered = settings.max_buffered_bytes or 4 * settings.max_upload_bytes
    load = {"pictures": 0, "pixels": 0, "buffered": 0}  # touched only from the event loop: no lock needed
    busy_headers = {"Retry-After": str(settings.retry_after)}

    app = FastAPI(title="fillgap", version=_version(),
                  description="Fill holes in pictures: brush a mask in the page at `/`, or POST to "
                              "`/api/inpaint`.")
    app.state.model, app.state.settings, app.state.model_info = net, settings, info

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem):
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(_ClientGone)
    async def _gone(request: Request, exc: _ClientGone):
        log.info("client %s hung up: %s", _client(request), exc)
        return Response(status_code=499)  # nobody reads it; shows in the access log

    app.add_middleware(_Guard, settings=settings)
    app.add_middleware(_AccessLog)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # never a traceback page
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/health", summary="Liveness check")
    async def health():
        return {"status": "ok", "model": info["name"]}

    @app.get("/api/models", summary="The loaded model and its metadata")
    async def models():
        from .methods import available_names  # fill methods only: architectures have no weights
        return {"loaded": info, "models": [info], "registered": available_names(),
                "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels},
                "threads": resolve_threads(settings.threads)}

    async def read_body(request: Request, deadline: float) -> bytes:
        """The whole body in memory, with the byte cap, the shared memory budget and the timeouts."""
        limit = settings.max_upload_bytes
        too_big = HTTPProblem(413, f"upload too large: the limit is {_mb(limit)} "
                                   "(start the server with a larger --max-upload-mb)")
        body, size, counted = bytearray(), 0, 0
        declared = request.headers.get("content-length")
        over = bool(declared and declared.isdigit() and int(declared) > limit)
        receive = request.receive
        try:
            while True:
                wait = min(settings.body_idle_timeout, deadline - time.monotonic())
                with anyio.move_on_after(max(wait, 0)) as idle:
                    message = await receive()
                if idle.cancelled_caught:
                    raise HTTPProblem(408, f"the upload stalled ({size:,} bytes received, nothing for "
                                           f"{wait:.0f} s): send the whole request without pauses",
                                      {"Connection": "close"})
                if message["type"] == "http.disconnect":
                    raise _ClientGone(f"left during the upload after {size:,} bytes")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:  # also stops a lying or missing Content-Length
                    over = True
                if over:
                    # Read on, discarding, for a while: a client still sending when the answer
                    # comes sees a reset connection instead of the 413 and its message.
                    body = bytearray()
                    if size > limit + _DRAIN_BYTES:
                        break
                else:
                    if load["buffered"] + len(chunk) > max_buffered:
                        raise HTTPProblem(503, f"busy: {_mb(load['buffered'])} of uploads are already in "
                                               f"memory; try again in {settings.retry_after} s", busy_headers)
                    body += chunk
                    load["buffered"] += len(chunk)
                    counted += len(chunk)
                if not message.get("more_body", False):
                    break
        finally:
            load["buffered"] -= counted
        if over:
            raise too_big
        return bytes(body)

    def decode(parts: dict[str, _Part]) -> tuple[Picture, np.ndarray]:
        img_part, mask_part = _check_picture_part(parts, "image"), _check_picture_part(parts, "mask")
        resize = _bool_field(parts, "resize_mask")
        size, mask_size = _header_size(img_part), _header_size(mask_part)
        if not resize and size and mask_size and size != mask_size:  # refused before decoding either
            raise HTTPProblem(422, f"the mask is {mask_size[0]}x{mask_size[1]} but the image is {size[0]}x{size[1]} "
                                   "(send a mask of the same size, or resize_mask=true)")
        try:
            picture = read_picture_bytes(bytes(img_part.data), _label("image", img_part), settings.max_pixels)
            mask = read_mask_bytes(bytes(mask_part.data), _label("mask", mask_part), settings.max_pixels)
        except ImageTooLargeError as exc:
            raise HTTPProblem(413, f"{exc} (start the server with a larger --max-pixels)") from None
        except FillgapError as exc:
            raise HTTPProblem(422, str(exc)) from None
        h, w = picture.rgb.shape[:2]
        if mask.shape != (h, w):
            if not resize:
                raise HTTPProblem(422, f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h} "
                                       "(send a mask of the same size, or resize_mask=true)")
            mask = resize_mask(mask, (h, w))  # the pipeline's resize: thin strokes survive
        return picture, mask

    def fill(rgb: np.ndarray, mask: np.ndarray, dilate: int, options: dict, token: CancelToken) -> np.ndarray:
        set_threads(settings.threads)  # from the thread that runs the fill (OpenMP's count is per thread)
        try:
            with cancel_on(token):  # the pipeline stops between windows once the token is set
                return inpaint(rgb, mask, net, dilate, **options)
        except FillgapError as exc:
            raise HTTPProblem(422, str(exc)) from None

    def past_deadline(deadline: float, what: str) -> HTTPProblem:
        return HTTPProblem(503, f"{what} did not finish within the server's {settings.request_timeout:g} s per "
                                f"request; try a smaller picture or hole, or again in {settings.retry_after} s",
                           busy_headers)

    async def watched_fill(request: Request, deadline: float, *args) -> np.ndarray:
        """``fill`` in a worker thread, stopped (``fillgap.cancel``) when the client hangs up or the
        deadline passes: a fill nobody waits for would hold the fill slot and its memory."""
        token = CancelToken()

        async def watch():
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                # the body was read: the next message is the hang-up (uvicorn sends nothing else)
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                token.cancel("gone")
                return
            token.cancel("deadline")

        outcome: dict = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                outcome["out"] = await anyio.to_thread.run_sync(fill, *args, token)
            except Exception as exc:  # raised below: from inside, the task group would wrap it in a group
                outcome["error"] = exc
            tg.cancel_scope.cancel()
        error = outcome.get("error")
        if isinstance(error, Cancelled):
            if token.reason == "gone":
                raise _ClientGone("left during the fill (stopped)")
            raise past_deadline(deadline, "the fill")
        if error is not None:
            raise error
        return outcome["out"]

    def save(out: np.ndarray, picture: Picture) -> str:
        # Generated name only: nothing the client sends reaches the path.
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{uuid.uuid4().hex[:12]}.png"
        # atomic, refuses to overwrite; the picture's profile, EXIF and greyscale kept, as fill_file does
        write_image(save_dir / name, out, alpha=picture.alpha, metadata=picture.metadata, grey=picture.grey)
        return name

    @app.post("/api/inpaint", summary="Fill the masked part of a picture; answers a PNG",
              response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "The filled picture (PNG)"},
                         413: {"description": "Upload or picture too large"},
                         415: {"description": "Not a form, or a part that is not a picture"},
                         422: {"description": "Missing field, unreadable picture, wrong mask size"}},
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["image", "mask"],
                  "properties": {
                      "image": {"type": "string", "format": "binary", "description": "The picture"},
                      "mask": {"type": "string", "format": "binary",
                               "description": "Same size; white/opaque = hole, grey = partial"},
                      "dilate": {"type": "integer", "default": 0, "minimum": 0,
                                 "maximum": settings.max_dilate, "description": "Grow the hole by N px"},
                      "resize_mask": {"type": "boolean", "default": False,
                                      "description": "Scale a mask of another size to the picture"},
                      "strategy": {"type": "string", "enum": list(STRATEGIES), "default": settings.strategy,
                                   "description": "auto | resize | crop | cra (see fillgap fill --help)"},
                      "max_side": {"type": "integer", "minimum": MIN_MAX_SIDE,
                                   "description": "Longest window side filled at native resolution"},
                      "blend": {"type": "string", "enum": list(BLENDS), "default": settings.blend,
                                "description": "hard: every mask pixel > 0 replaced; soft: grey = weight"},
                  }}}}}})
    async def inpaint_endpoint(request: Request):
        deadline = time.monotonic() + settings.request_timeout
        body = await read_body(request, deadline)
        parts = await anyio.to_thread.run_sync(parse_multipart, body, request.headers.get("content-type", ""))
        del body
        # Room for its pixels, or 503 at once: a queue of waiting requests would each hold a
        # decoded picture. The size comes from the picture's header; nothing is decoded yet.
        # The mask's pixels count too: with resize_mask a small picture may come with a huge mask.
        pixels = _header_pixels(parts.get("image")) + _header_pixels(parts.get("mask"))
        if load["pictures"] and load["pixels"] + pixels > max_in_flight:
            raise HTTPProblem(503, f"busy: {load['pixels'] / 1e6:.0f} MP of pictures are being filled already; "
                                   f"try again in {settings.retry_after} s", busy_headers)
        load["pictures"] += 1
        load["pixels"] += pixels
        try:
            return await handle(request, parts, deadline)
        finally:
            load["pictures"] -= 1
            load["pixels"] -= pixels

    async def handle(request: Request, parts: dict[str, _Part], deadline: float) -> Response:
        dilate = _int_field(parts, "dilate", 0, 0, settings.max_dilate)
        options = {"strategy": _choice_field(parts, "strategy", settings.strategy, STRATEGIES),
                   "blend": _choice_field(parts, "blend", settings.blend, BLENDS),
                   # a request may lower the working size, never raise it above the server's own
                   "max_side": _int_field(parts, "max_side", settings.max_side, MIN_MAX_SIDE,
                                          settings.max_side or net.max_side)}
        picture, mask = await anyio.to_thread.run_sync(decode, parts)
        del parts
        if time.monotonic() > deadline:
            raise past_deadline(deadline, "the request")
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waited:
            await limiter.acquire()
        if waited.cancelled_caught:
            raise HTTPProblem(503, f"busy: no fill slot within {settings.request_timeout:g} s; try again in "
                                   f"{settings.retry_after} s", busy_headers)
        try:
            if await request.is_disconnected():  # nobody would get the result: skip the fill
                raise _ClientGone("left before the fill")
            out = await watched_fill(request, deadline, picture.rgb, mask, dilate, options)
        finally:
            limiter.release()
        del mask
        picture = picture._replace(rgb=None)  # the input's pixels are not needed any more
        if time.monotonic() > deadline:  # encoding a big picture takes seconds: not for nobody
            raise past_deadline(deadline, "the request")
        png = await anyio.to_thread.run_sync(
            functools.partial(encode_png, out, picture.alpha, metadata=picture.metadata, grey=picture.grey))
        await anyio.to_thread.run_sync(_trim_memory)
        headers = {"Cache-Control": "no-store"}
        if save_dir is not None:
            try:
                headers["X-Fillgap-Saved"] = await anyio.to_thread.run_sync(save, out, picture)
            except FillgapError as exc:
                raise HTTPProblem(500, f"could not save the result in --save-dir: {exc}") from None
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _header_size(part: _Part | None) -> tuple[int, int] | None:
    """(width, height) from a picture's header (None when unreadable: decoding will say why)."""
    if part is None or not part.data:
        return None
    import warnings

    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bomb warning: the decoder refuses it with a 413 later
            with Image.open(io.BytesIO(part.data), formats=DECODERS) as img:  # reads the header only
                return img.size
    except Exception:  # noqa: BLE001 - any damaged upload: the decoder gives the real message
        return None


def _header_pixels(part: _Part | None) -> int:
    """Width x height from a picture's header (0 when unreadable)."""
    size = _header_size(part)
    return size[0] * size[1] if size else 0


def _label(field_name: str, part: _Part) -> str:
    # The client's file name appears only in messages, never in a path, and is kept short.
    if part.filename:
        return f"{field_name} '{part.filename[:80]}'"
    return field_name


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("fillgap")
    except Exception:
        return "0"


def _bind(host: str, port: int):
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening now, not when uvicorn starts: a client that connects as soon as the URL is
        # printed waits in the backlog instead of being refused.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        import errno
        # the port is taken (or reserved): another --port helps; an address this machine does not
        # have (or no such host) needs another --host
        hint = "choose another --port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "check --host"
        raise FillgapError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from None
    return sock


def _url(host: str, sock) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"


def serve(model: str | Path | None, host: str = "127.0.0.1", port: int = 8000,
          settings: ServerSettings | None = None) -> None:
    """Load the model, bind, serve until Ctrl-C (``fillgap serve``); port 0 picks a free one."""
    import uvicorn

    settings = settings or ServerSettings()
    if settings.allowed_hosts is None:
        settings = replace(settings, allowed_hosts=default_allowed_hosts(host))
    app = create_app(model, settings)
    sock = _bind(host, port)  # bound here, so a busy port is a one-line error, not a log
    info = app.state.model_info
    print(f"fillgap: model {info['name']} ({info['source']}); open {_url(host, sock)}/ "
          f"(API docs at /docs); Ctrl-C stops", flush=True)
    _log_to_stderr()
    uvicorn.Server(_uvicorn_config(app)).run(sockets=[sock])


def _log_to_stderr() -> None:
    """fillgap's access and hang-up lines on stderr (uvicorn's own stay at warnings)."""
    logger = logging.getLogger("fillgap")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _uvicorn_config(app: FastAPI):
    """uvicorn settings with ``app.state.settings``' connection limits (see ``_protocol``)."""
    import uvicorn

    # limit_concurrency stays off: uvicorn's own 503 is plain text without Retry-After, and it
    # counts half-open connections, which let ~520 of them lock every client out. _Guard answers
    # requests beyond max_connections with fillgap's JSON 503 instead.
    return uvicorn.Config(app, log_level="warning", http=_protocol(app.state.settings), timeout_keep_alive=5)


def _protocol(settings: ServerSettings):
    """uvicorn's h11 protocol with three guards per connection:

    - the header timeout: a connection that does not finish its request head in time is closed;
    - room for new clients: beyond ``max_connections`` open connections, the oldest ones with no
      request in progress (stalled or partial heads, idle keep-alives) are closed, so half-open
      connections cannot fill the server: they only push each other out, while a real request's
      head arrives in milliseconds and is then no longer a candidate. A per-address cap would
      not do: the hostile and the honest client may share an address (NAT, a proxy, loopback);
    - the deadline: an answer not handed to the client's socket within ``request_timeout`` s of
      its request head (a fill still running, or a client that never reads a large PNG) is
      dropped and the connection aborted, which frees the answer's memory and tells the app the
      client is gone (its fill stops).
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    idle: dict = {}  # connections without a request in progress, oldest first (dicts keep order)
    evicted = {"count": 0, "logged": 0.0}

    def make_room(excess: int) -> None:
        while excess > 0 and idle:
            conn = next(iter(idle))
            del idle[conn]
            if conn.busy():  # a request began since: it comes back here when its answer is done
                continue
            conn.transport.abort()  # abort, not close: a close waits for an unread answer to drain
            excess -= 1
            evicted["count"] += 1
        now = time.monotonic()
        if evicted["count"] and now - evicted["logged"] > 10:  # one line per 10 s, not one per connection
            log.info("over %d open connections: closed the %d oldest without a request in progress",
                     settings.max_connections, evicted["count"])
            evicted["count"], evicted["logged"] = 0, now

    class Protocol(H11Protocol):
        _head_timer = None
        _deadline_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            if len(self.connections) > settings.max_connections:  # before _arm: never itself
                make_room(len(self.connections) - settings.max_connections)
            self._arm()

        def handle_events(self):
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request head arrived: a new request/answer cycle
                idle.pop(self, None)
                if self._deadline_timer is not None:
                    self._deadline_timer.cancel()
                # a second past the app's own deadline, so its 503 goes out first
                self._deadline_timer = self.loop.call_later(settings.request_timeout + 1, self._deadline,
                                                            self.cycle)

        def on_response_complete(self):
            super().on_response_complete()
            self._arm()  # the next request on this connection gets the same time for its head

        def connection_lost(self, exc):
            idle.pop(self, None)
            for timer in (self._head_timer, self._deadline_timer):
                if timer is not None:
                    timer.cancel()
            super().connection_lost(exc)

        def busy(self) -> bool:
            """A request head has arrived and its answer is not complete."""
            return self.conn.their_state is not h11.IDLE or (self.cycle is not None
                                                             and not self.cycle.response_complete)

        def _arm(self):
            if not self.transport.is_closing():
                idle.pop(self, None)
                idle[self] = None  # the newest: closed last when room is needed
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(settings.header_timeout, self._head_timeout)

        def _head_timeout(self):
            # IDLE: no complete request head yet (a request in progress is SEND_BODY or DONE).
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self.conn.trailing_data[0]:  # part of a head arrived: a slow or stalled client
                c = self.client
                log.info("client %s sent no complete request head in %g s: connection closed",
                         f"{c[0]}:{c[1]}" if c else "-", settings.header_timeout)
            self.transport.close()

        def _deadline(self, cycle):
            if cycle.response_complete and not self.transport.get_write_buffer_size():
                return  # answered and handed to the socket in time
            c = self.client
            log.info("client %s: answer not delivered within %g s (%s): connection dropped",
                     f"{c[0]}:{c[1]}" if c else "-", settings.request_timeout,
                     "unread" if cycle.response_complete else "not ready")
            self.transport.abort()
            if cycle.response_complete:  # the answer's buffer goes with the connection: give its pages back
                self.loop.call_later(0.5, self.loop.run_in_executor, None, _trim_memory)

    return Protocol


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0):
    """Serve ``app`` from a background thread for tests and scripts; yields its base URL."""
    import time

    import uvicorn

    sock = _bind(host, port)
    server = uvicorn.Server(_uvicorn_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield _url(host, sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


__all__ = ["ServerSettings", "create_app", "serve", "running", "parse_multipart", "default_allowed_hosts"]
