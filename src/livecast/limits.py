"""Abuse limits shared by the listeners: connections per client address, HTTP body size, and
the number of HTTP requests allowed to wait on a blocking playlist reload at once.

Why these live together: every one of them is the answer to "a stranger can make the server
hold memory or sockets for as long as they like", and an operator tuning one wants to find the
others. The counters are plain in-process objects (no bus, no database) because they protect
*this* process's file descriptors and memory; a cluster gets the sum across its nodes, which
is what each node can afford.

Loopback is exempt by default: behind a reverse proxy or CDN edge on the same machine every
client arrives from ``127.0.0.1``, and capping that address would cap the whole site. Set
``LIVECAST_LIMIT_EXEMPT_IPS`` to the edge addresses (or to nothing, as the tests do) to change
it; the edge must then enforce per-client limits itself (nginx ``limit_conn``).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livecast import metrics
from livecast.config import Settings


class PerIpLimiter:
    """Open connections per client address, refusing the one past ``limit``.

    Connections are counted by a *key* (a transport, a chat connection) so that counting the
    same connection twice is harmless: an HTTP connection upgraded to a WebSocket keeps its
    slot instead of taking a second one, and a release without an acquire does nothing.
    """

    def __init__(self, limit: int, exempt: Iterable[str] = ()) -> None:
        self.limit = limit
        self.exempt = frozenset(exempt)
        self._keys: dict[object, str] = {}
        self._per_ip: Counter[str] = Counter()

    def acquire(self, ip: str, key: object) -> bool:
        if key in self._keys:
            return True
        if ip in self.exempt:
            self._keys[key] = ip
            return True
        if self._per_ip[ip] >= self.limit:
            return False
        self._per_ip[ip] += 1
        self._keys[key] = ip
        return True

    def release(self, key: object) -> None:
        ip = self._keys.pop(key, None)
        if ip is None or ip in self.exempt:
            return
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    def count(self, ip: str) -> int:
        return self._per_ip[ip]

    @property
    def open(self) -> int:
        return len(self._keys)

    @classmethod
    def for_settings(cls, settings: Settings, limit: int) -> PerIpLimiter:
        return cls(limit, settings.limit_exempt_ips)


class Gate:
    """A non-blocking counting gate: a request that finds it full is answered at once (503 +
    ``Retry-After``) rather than queued, because a queue of long polls is the thing we cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active = max(0, self.active - 1)


def blocking_gate(platform: Any) -> Gate:
    """The process-wide gate for blocking playlist reloads and preload-hint parts."""
    gate = platform.state.get("limits.hls_blocking")
    if gate is None:
        gate = Gate(platform.settings.hls_max_blocking_requests)
        platform.state["limits.hls_blocking"] = gate
    return gate


# HTTP: body size ------------------------------------------------------------------------------


class BodySizeLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413.

    A declared ``Content-Length`` over the limit is refused before a byte of the body is read;
    a chunked body is counted as it arrives, and at the first byte over the app is told the
    client went away (``http.disconnect``) and whatever it answers is replaced by the 413, sent
    once the rest of the upload is read and dropped (:func:`_drain`). Not an exception raised
    from ``receive``: any ``BaseHTTPMiddleware`` in the app would wrap it in an
    ``ExceptionGroup`` on its way out and the client would see a 500.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the HTTP parser has already refused a malformed length
                if declared > limit:
                    metrics.errors.labels("body_too_large").inc()
                    await _send_error(send, 413, "Payload Too Large", f"Request body larger than {limit} bytes")
                    return
        seen = 0
        overflow = started = False

        async def counted() -> Message:
            nonlocal seen, overflow
            if overflow:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow = True
                    metrics.errors.labels("body_too_large").inc()
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow and not started:
                return  # its answer to a body it never got whole; the 413 goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not overflow or started:
                raise
        if overflow and not started:
            await _drain(receive)
            await _send_error(send, 413, "Payload Too Large", f"Request body larger than {limit} bytes")


# How much more of an oversized chunked body is read and dropped before the 413 goes out, and
# for how long at most. A server that answers and closes while the client is still sending
# makes the kernel reset the connection, and the client sees a broken pipe instead of the 413
# (nginx's "lingering close" answers the same problem). The app's own answer used to take long
# enough for a small upload to finish; the bound keeps a large one from holding us up.
DRAIN_BYTES = 64 * 1024
DRAIN_S = 1.0


async def _drain(receive: Receive) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_S
    read = 0
    while read < DRAIN_BYTES:
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                message = await receive()
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_error(send: Send, status: int, reason: str, message: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": reason, "status": status, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install(app: Any, platform: Any) -> None:
    """HTTP input limits for every role (called by the runner): the body size cap, and a 400
    for text no encoder can write."""
    app.add_middleware(BodySizeLimit, max_bytes=platform.settings.http_max_body_bytes)
    app.add_exception_handler(UnicodeEncodeError, _unencodable_text)


async def _unencodable_text(request: Any, exc: Exception) -> Any:
    """JSON may escape a lone surrogate (``"\\ud800"``), which Python's ``json`` decodes into a
    ``str`` that no UTF-8 encoder accepts: the database driver, the bus or the chat wire then
    raised, a 500 (found by fuzzing). It is the client's malformed text, so it is a 400."""
    if not isinstance(exc, UnicodeEncodeError) or "surrogates not allowed" not in str(exc):
        raise exc
    from livecast.app import error_response

    metrics.errors.labels("unencodable_text").inc()
    return error_response(400, "Invalid text: lone UTF-16 surrogates are not allowed")


# HTTP: connections per address, at the transport -----------------------------------------------

_REFUSAL_BODY = json.dumps({"error": "Too Many Requests", "status": 429,
                            "message": "Too many connections from your address"}).encode()
REFUSAL = (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
           b"content-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\nretry-after: 5\r\n"
           b"connection: close\r\n\r\n" + _REFUSAL_BODY)
REFUSED_GRACE_S = 5.0  # a refused client that never sends a request is cut after this
_TIMEOUT_BODY = json.dumps({"error": "Request Timeout", "status": 408,
                            "message": "The request headers did not arrive in time"}).encode()
HEADER_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                  b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\nconnection: close\r\n\r\n"
                  + _TIMEOUT_BODY)


def _peer_ip(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class _WriteTimeout:
    """Abort a connection whose peer has read none of our writes for ``timeout`` seconds.

    uvicorn has no send timeout: once the socket's buffer is full asyncio calls the protocol's
    ``pause_writing`` and the app's ``send`` waits for ``resume_writing``, which a client that
    stopped reading never causes, so the connection, its task and the bytes buffered for it
    would stay for ever. The timer runs only while writing is paused, that is while the bytes
    waiting for the client stay above asyncio's high-water mark; a reader that makes room for
    a few kilobytes at least once per ``timeout`` keeps its connection however slow it is.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None

    def paused(self, transport: asyncio.Transport) -> None:
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.timeout, self._stalled, transport)

    def resumed(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _stalled(self, transport: asyncio.Transport) -> None:
        self.timer = None
        metrics.errors.labels("http_write_timeout").inc()
        transport.abort()  # close() would wait for the very buffer that is not draining


def limited_protocols(limiter: PerIpLimiter, http_class: type[Any], ws_class: type[Any] | None,
                      header_timeout: float = 30.0, write_timeout: float = 60.0) -> tuple[type, Any]:
    """Subclasses of uvicorn's HTTP and WebSocket protocols that count connections per address.

    ASGI only sees requests, but the resource a flood exhausts is connections (a socket and a
    protocol object each, idle or not), so the count is kept where connections begin and end.
    A connection over the limit is answered ``429`` with Twitch's envelope at its first bytes
    and closed; it never reaches the app. The WebSocket class only releases: an upgraded
    connection keeps the slot its HTTP request took (same transport key).

    A connection must also finish its first request's headers within ``header_timeout``
    seconds (``408``, closed): uvicorn times out idle keep-alive connections only *after* a
    response, so without this a client that connects and sends nothing, or a header a byte at
    a time, holds its socket for ever. Both classes abort a connection that leaves our writes
    unread for ``write_timeout`` seconds (:class:`_WriteTimeout`).
    """

    class LimitedHttp(http_class):
        _refused = False
        _header_timer: asyncio.TimerHandle | None = None
        _tail = b""
        _got_bytes = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            loop = asyncio.get_running_loop()
            if not limiter.acquire(_peer_ip(transport), transport):
                self._refused = True
                metrics.errors.labels("http_conn_limit").inc()
                loop.call_later(REFUSED_GRACE_S, transport.abort)
                return
            self._header_timer = loop.call_later(header_timeout, self._headers_too_slow)

        def pause_writing(self) -> None:
            super().pause_writing()
            if not hasattr(self, "_write_timeout"):
                self._write_timeout = _WriteTimeout(write_timeout)
            self._write_timeout.paused(self.transport)

        def resume_writing(self) -> None:
            super().resume_writing()
            if hasattr(self, "_write_timeout"):
                self._write_timeout.resumed()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                if not self.transport.is_closing():
                    self.transport.write(REFUSAL)
                    self.transport.close()
                return
            if self._header_timer is not None:
                self._got_bytes = True
                seen = self._tail + data
                if b"\r\n\r\n" in seen or b"\n\n" in seen:
                    self._header_timer.cancel()
                    self._header_timer = None
                else:
                    self._tail = seen[-3:]
            super().data_received(data)

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            metrics.errors.labels("http_header_timeout").inc()
            if self._got_bytes:
                self.transport.write(HEADER_TIMEOUT)
            self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            if hasattr(self, "_write_timeout"):
                self._write_timeout.resumed()
            limiter.release(self.transport)
            super().connection_lost(exc)

    if ws_class is None:
        return LimitedHttp, None

    class LimitedWs(ws_class):  # type: ignore[misc, valid-type]
        def pause_writing(self) -> None:
            super().pause_writing()
            if not hasattr(self, "_write_timeout"):
                self._write_timeout = _WriteTimeout(write_timeout)
            self._write_timeout.paused(self.transport)

        def resume_writing(self) -> None:
            super().resume_writing()
            if hasattr(self, "_write_timeout"):
                self._write_timeout.resumed()

        def connection_lost(self, exc: Exception | None) -> None:
            if hasattr(self, "_write_timeout"):
                self._write_timeout.resumed()
            limiter.release(self.transport)
            super().connection_lost(exc)

    return LimitedHttp, LimitedWs


def install_protocols(config: Any, platform: Any) -> None:
    """Swap uvicorn's protocol classes for counting ones, before ``config.load()`` runs."""
    from uvicorn.config import HTTP_PROTOCOLS, WS_PROTOCOLS
    from uvicorn.importer import import_from_string

    settings = platform.settings
    limiter = PerIpLimiter.for_settings(settings, settings.http_max_connections_per_ip)
    platform.state["limits.http"] = limiter
    http_class = import_from_string(HTTP_PROTOCOLS.get(config.http, config.http)) \
        if isinstance(config.http, str) else config.http
    ws_class = config.ws
    if isinstance(ws_class, str):
        path = WS_PROTOCOLS.get(ws_class, ws_class)
        ws_class = import_from_string(path) if path else None
    config.http, ws = limited_protocols(limiter, http_class, ws_class, settings.http_header_timeout,
                                          settings.http_write_timeout)
    if ws is not None:
        config.ws = ws
