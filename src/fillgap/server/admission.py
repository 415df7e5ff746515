"""Who may talk to the server: the Host and Origin guard, before a request's body is read."""

from __future__ import annotations

import json

from fastapi import Request

from .settings import ServerSettings


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
                return await _refuse(
                    send, 403, f"requests from pages of '{origin[:80]}' are refused (fillgap serve --allow-origin)"
                )
        if self.active >= self.settings.max_connections:
            wait = str(self.settings.retry_after)
            # no Connection: close: uvicorn reads the unread body away, where a close would reset the
            # connection under a client still sending and lose this answer
            return await _refuse(
                send,
                503,
                f"busy: {self.active} requests in progress; try again in {wait} s",
                [(b"retry-after", wait.encode())],
            )
        self.active += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _refuse(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
