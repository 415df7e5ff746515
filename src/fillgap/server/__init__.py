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

from .admission import default_allowed_hosts
from .app import create_app
from .multipart import parse_multipart
from .run import running, serve
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve", "running", "parse_multipart", "default_allowed_hosts"]
