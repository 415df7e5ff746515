"""The upload form: a bounded multipart parser and the checks of its fields."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from ..imageio import DECODERS
from .settings import HTTPProblem


@dataclass
class _Part:
    filename: str | None = None
    content_type: str = ""
    data: bytearray = field(default_factory=bytearray)


MAX_PARTS = 32  # the form has 10 fields; a million one-byte parts took 46 s to parse


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

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except _TooManyParts:
        raise HTTPProblem(413, f"the form has more than {MAX_PARTS} parts (fillgap's has 10 fields)") from None
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
