"""The ASGI app: routes, the fill slots, the memory budget, deadlines and the access log."""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import functools
import logging
import threading
import time
import uuid
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..cancel import Cancelled, CancelToken, cancel_on
from ..errors import FillgapError
from ..fill import BLENDS, STRATEGIES, check_blend, check_max_side, check_strategy, inpaint
from ..files import mask_problem
from ..fill.mask import mask_for
from ..fill.strategies import MIN_MAX_SIDE
from ..imageio import ImageTooLargeError, Picture, encode_png, read_mask_bytes, read_picture_bytes, write_image
from ..methods import DEFAULT_RUNTIME, FillMethod, available_names, get_method
from ..models import InpaintModel
from ..runtime.threads import resolve_threads, set_threads
from .admission import _Guard, _client
from .multipart import (
    _bool_field,
    _check_picture_part,
    _choice_field,
    _header_pixels,
    _header_size,
    _int_field,
    _label,
    _Part,
    parse_multipart,
)
from .settings import MAX_OTHER_METHODS, HTTPProblem, STATIC_DIR, ServerSettings, _ClientGone, _DRAIN_BYTES, _mb, log


access_log = logging.getLogger("fillgap.access")


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
            access_log.info(
                '%s "%s %s" %s %d %.3fs',
                f"{c[0]}:{c[1]}" if c else "-",
                scope["method"],
                scope["path"],
                seen["status"] or "-",
                seen["bytes"],
                time.perf_counter() - started,
            )


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


def _model_info(method: FillMethod, source: str, metadata: dict[str, str]) -> dict:
    net = getattr(method.network, "model", None)
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


def _load(
    model: FillMethod | InpaintModel | str | Path | None, runtime: str = DEFAULT_RUNTIME
) -> tuple[FillMethod, str, dict[str, str]]:
    from ..checkpoint import weights_metadata

    method = get_method(model, runtime)
    if isinstance(model, (FillMethod, InpaintModel)):
        return method, "given", {}
    network = method.network
    meta, path = {}, Path(network.source)
    if network.kind == "network" and path.suffix == ".safetensors" and path.is_file():
        hidden = ("model_name", "model_kwargs", "tensor_sha256")
        meta = {k: v for k, v in weights_metadata(path).items() if k not in hidden}
    # a file's name only: /api/models must not tell a client where the server's files are
    source = "default" if model is None else (path.name if path.is_absolute() or path.exists() else network.source)
    return method, source, meta


def create_app(
    model: FillMethod | InpaintModel | str | Path | None = None, settings: ServerSettings | None = None
) -> FastAPI:
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
    # Other registered methods a request may name (the form's `model`): loaded on first use, at most
    # MAX_OTHER_METHODS kept (the least recently used goes), so a page's model switch costs one load.
    others: dict[str, FillMethod] = {}
    others_lock = threading.Lock()
    max_in_flight = settings.max_pixels_in_flight or 2 * settings.max_pixels
    max_buffered = settings.max_buffered_bytes or 4 * settings.max_upload_bytes
    load = {"pictures": 0, "pixels": 0, "buffered": 0}  # touched only from the event loop: no lock needed
    busy_headers = {"Retry-After": str(settings.retry_after)}

    app = FastAPI(
        title="fillgap",
        version=_version(),
        description="Fill holes in pictures: brush a mask in the page at `/`, or POST to `/api/inpaint`.",
    )
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

        return {
            "loaded": info,
            "models": [info],
            "registered": available_names(),
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels},
            "threads": resolve_threads(settings.threads),
        }

    async def read_body(request: Request, deadline: float) -> bytes:
        """The whole body in memory, with the byte cap, the shared memory budget and the timeouts."""
        limit = settings.max_upload_bytes
        too_big = HTTPProblem(
            413, f"upload too large: the limit is {_mb(limit)} (start the server with a larger --max-upload-mb)"
        )
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
                    raise HTTPProblem(
                        408,
                        f"the upload stalled ({size:,} bytes received, nothing for "
                        f"{wait:.0f} s): send the whole request without pauses",
                        {"Connection": "close"},
                    )
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
                        raise HTTPProblem(
                            503,
                            f"busy: {_mb(load['buffered'])} of uploads are already in "
                            f"memory; try again in {settings.retry_after} s",
                            busy_headers,
                        )
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
            raise HTTPProblem(
                422,
                f"the mask is {mask_size[0]}x{mask_size[1]} but the image is {size[0]}x{size[1]} "
                "(send a mask of the same size, or resize_mask=true)",
            )
        try:
            picture = read_picture_bytes(bytes(img_part.data), _label("image", img_part), settings.max_pixels)
            mask = read_mask_bytes(bytes(mask_part.data), _label("mask", mask_part), settings.max_pixels)
        except ImageTooLargeError as exc:
            raise HTTPProblem(413, f"{exc} (start the server with a larger --max-pixels)") from None
        except FillgapError as exc:
            raise HTTPProblem(422, str(exc)) from None
        try:
            mask = mask_for(
                mask, picture.rgb.shape[:2], resize, hint="send a mask of the same size, or resize_mask=true"
            )
            # as the CLI refuses a mask file: an inverted mask, or the picture sent as the mask, would
            # come back as a picture-sized smear with a 200
            problem = None if _bool_field(parts, "force") else mask_problem(mask)
        except FillgapError as exc:
            raise HTTPProblem(422, str(exc)) from None
        if problem:
            raise HTTPProblem(422, f"the mask {problem}; send force=true to fill it anyway")
        return picture, mask

    def method_named(name: str) -> FillMethod:
        """The loaded method, or another registered one (worker thread: loading takes a moment)."""
        if not name or name == net.name:
            return net
        with others_lock:
            method = others.pop(name, None) or get_method(name, settings.runtime)
            others[name] = method  # most recently used last
            while len(others) > MAX_OTHER_METHODS:
                others.pop(next(iter(others)))
            return method

    def fill(
        rgb: np.ndarray, mask: np.ndarray, dilate: int, options: dict, model: str, token: CancelToken
    ) -> np.ndarray:
        set_threads(settings.threads)  # from the thread that runs the fill (OpenMP's count is per thread)
        try:
            with cancel_on(token):  # the pipeline stops between windows once the token is set
                return inpaint(rgb, mask, method_named(model), dilate, **options)
        except FillgapError as exc:
            raise HTTPProblem(422, str(exc)) from None

    def past_deadline(deadline: float, what: str) -> HTTPProblem:
        return HTTPProblem(
            503,
            f"{what} did not finish within the server's {settings.request_timeout:g} s per "
            f"request; try a smaller picture or hole, or again in {settings.retry_after} s",
            busy_headers,
        )

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

    @app.post(
        "/api/inpaint",
        summary="Fill the masked part of a picture; answers a PNG",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "The filled picture (PNG)"},
            413: {"description": "Upload or picture too large"},
            415: {"description": "Not a form, or a part that is not a picture"},
            422: {"description": "Missing field, unreadable picture, wrong mask size"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["image", "mask"],
                            "properties": {
                                "image": {"type": "string", "format": "binary", "description": "The picture"},
                                "mask": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "Same size; white/opaque = hole, grey = partial",
                                },
                                "dilate": {
                                    "type": "integer",
                                    "default": 0,
                                    "minimum": 0,
                                    "maximum": settings.max_dilate,
                                    "description": "Grow the hole by N px",
                                },
                                "resize_mask": {
                                    "type": "boolean",
                                    "default": False,
                                    "description": "Scale a mask of another size to the picture",
                                },
                                "force": {
                                    "type": "boolean",
                                    "default": False,
                                    "description": "Fill with a mask that looks like a photo or covers 60 % "
                                    "or more of the picture (refused otherwise)",
                                },
                                "model": {
                                    "type": "string",
                                    "default": "",
                                    "description": "Another fill method of /api/models' `registered` list for this "
                                    "request (default: the model the server was started with)",
                                },
                                "strategy": {
                                    "type": "string",
                                    "enum": list(STRATEGIES),
                                    "default": settings.strategy,
                                    "description": "auto | resize | crop | cra (see fillgap fill --help)",
                                },
                                "max_side": {
                                    "type": "integer",
                                    "minimum": MIN_MAX_SIDE,
                                    "description": "Longest window side filled at native resolution",
                                },
                                "blend": {
                                    "type": "string",
                                    "enum": list(BLENDS),
                                    "default": settings.blend,
                                    "description": "hard: every mask pixel > 0 replaced; soft: grey = weight",
                                },
                            },
                        }
                    }
                },
            }
        },
    )
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
            raise HTTPProblem(
                503,
                f"busy: {load['pixels'] / 1e6:.0f} MP of pictures are being filled already; "
                f"try again in {settings.retry_after} s",
                busy_headers,
            )
        load["pictures"] += 1
        load["pixels"] += pixels
        try:
            return await handle(request, parts, deadline)
        finally:
            load["pictures"] -= 1
            load["pixels"] -= pixels

    async def handle(request: Request, parts: dict[str, _Part], deadline: float) -> Response:
        dilate = _int_field(parts, "dilate", 0, 0, settings.max_dilate)
        model = _choice_field(parts, "model", "", ("", net.name, *available_names()))
        options = {
            "strategy": _choice_field(parts, "strategy", settings.strategy, STRATEGIES),
            "blend": _choice_field(parts, "blend", settings.blend, BLENDS),
            # a request may lower the working size, never raise it above the server's own
            "max_side": _int_field(
                parts, "max_side", settings.max_side, MIN_MAX_SIDE, settings.max_side or net.max_side
            ),
        }
        picture, mask = await anyio.to_thread.run_sync(decode, parts)
        del parts
        if time.monotonic() > deadline:
            raise past_deadline(deadline, "the request")
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waited:
            await limiter.acquire()
        if waited.cancelled_caught:
            raise HTTPProblem(
                503,
                f"busy: no fill slot within {settings.request_timeout:g} s; try again in {settings.retry_after} s",
                busy_headers,
            )
        try:
            if await request.is_disconnected():  # nobody would get the result: skip the fill
                raise _ClientGone("left before the fill")
            out = await watched_fill(request, deadline, picture.rgb, mask, dilate, options, model)
        finally:
            limiter.release()
        del mask
        picture = picture._replace(rgb=None)  # the input's pixels are not needed any more
        if time.monotonic() > deadline:  # encoding a big picture takes seconds: not for nobody
            raise past_deadline(deadline, "the request")
        png = await anyio.to_thread.run_sync(
            functools.partial(encode_png, out, picture.alpha, metadata=picture.metadata, grey=picture.grey)
        )
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


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("fillgap")
    except Exception:
        return "0"
