"""Stopping a fill from outside it: cooperative cancellation.

A caller that may give up on a fill (the server, when the client hangs up or the request's
deadline passes) runs it under ``cancel_on(token)`` and calls ``token.cancel(reason)`` from any
thread; the pipeline's long loops call ``checkpoint()`` between steps (windows, tiles, search
rounds, attention chunks), which raises ``Cancelled`` once the token is set. Outside
``cancel_on``, ``checkpoint()`` does nothing, so the CLI and the API pay one context lookup.

A module of its own, importing nothing of fillgap, so every layer may call ``checkpoint()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Iterator


class Cancelled(Exception):
    """The fill was stopped by its caller (not a problem with the input)."""


class CancelToken:
    """Set once, from any thread; the first reason given is kept."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


_current: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("fillgap_cancel", default=None)


@contextlib.contextmanager
def cancel_on(token: CancelToken) -> Iterator[CancelToken]:
    """``checkpoint()`` inside this block (same thread or context) raises once ``token`` is cancelled."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def checkpoint() -> None:
    """Raise ``Cancelled`` when the current fill's token was cancelled; call it between steps."""
    token = _current.get()
    if token is not None and token.cancelled:
        raise Cancelled(token.reason)


__all__ = ["Cancelled", "CancelToken", "cancel_on", "checkpoint"]
