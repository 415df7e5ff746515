"""Running the app: the socket, uvicorn's settings and its connection handling, ``serve`` and ``running``."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI

from ..errors import FillgapError
from .admission import default_allowed_hosts
from .app import _trim_memory, create_app
from .settings import ServerSettings, log


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


def serve(
    model: str | Path | None, host: str = "127.0.0.1", port: int = 8000, settings: ServerSettings | None = None
) -> None:
    """Load the model, bind, serve until Ctrl-C (``fillgap serve``); port 0 picks a free one."""
    import uvicorn

    settings = settings or ServerSettings()
    if settings.allowed_hosts is None:
        settings = replace(settings, allowed_hosts=default_allowed_hosts(host))
    app = create_app(model, settings)
    sock = _bind(host, port)  # bound here, so a busy port is a one-line error, not a log
    info = app.state.model_info
    print(
        f"fillgap: model {info['name']} ({info['source']}); open {_url(host, sock)}/ (API docs at /docs); Ctrl-C stops",
        flush=True,
    )
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
            log.info(
                "over %d open connections: closed the %d oldest without a request in progress",
                settings.max_connections,
                evicted["count"],
            )
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
                self._deadline_timer = self.loop.call_later(settings.request_timeout + 1, self._deadline, self.cycle)

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
            return self.conn.their_state is not h11.IDLE or (
                self.cycle is not None and not self.cycle.response_complete
            )

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
                log.info(
                    "client %s sent no complete request head in %g s: connection closed",
                    f"{c[0]}:{c[1]}" if c else "-",
                    settings.header_timeout,
                )
            self.transport.close()

        def _deadline(self, cycle):
            if cycle.response_complete and not self.transport.get_write_buffer_size():
                return  # answered and handed to the socket in time
            c = self.client
            log.info(
                "client %s: answer not delivered within %g s (%s): connection dropped",
                f"{c[0]}:{c[1]}" if c else "-",
                settings.request_timeout,
                "unread" if cycle.response_complete else "not ready",
            )
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
