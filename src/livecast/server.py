"""``livecast serve``: one asyncio loop running the roles this process was given.

HTTP is served by uvicorn on a socket we bind ourselves (so port 0 works and the chosen port
is known before anyone connects). Other listeners (RTMP, IRC) and background workers are
*services*: objects with ``start() -> ports`` and ``stop()``, created per role from
:data:`SERVICES`. Signals set one event; shutdown stops services in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import logging
import signal
import socket
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol

import uvicorn

from livecast import limits
from livecast.app import create_app
from livecast.config import Settings
from livecast.logs import event
from livecast.platform import Platform
from livecast.web import headers as security_headers

log = logging.getLogger("livecast.server")
STOP_S = 10.0  # each service's stop, then each after_stop; a systemd stop waits 90 s in all


async def _in_time(service: object, step: str, work: Awaitable[None]) -> None:
    """One stop step of one service, bounded by STOP_S; a failure is logged and the rest go on."""
    name = getattr(service, "name", type(service).__name__)
    try:
        await asyncio.wait_for(work, timeout=STOP_S)
    except TimeoutError:  # what it was waiting on says nothing more than this line
        event(log, "service did not stop in time", logging.ERROR, service=name, step=step, timeout_s=STOP_S)
    except Exception:
        log.exception("error %s %s", {"stop": "stopping", "finish": "finishing"}[step], name)


class Service(Protocol):
    name: str

    async def start(self) -> dict[str, int]:
        """Start listening or working; return the ports bound, by name (may be empty)."""
        ...

    async def stop(self) -> None: ...


# (role, "module:factory"); a factory takes the Platform and returns a Service.
SERVICES: list[tuple[str, str]] = [
    ("ingest", "livecast.vod.archive:create_service"),  # before media: stops after every stream ended
    ("ingest", "livecast.media.service:create_service"),
    ("ingest", "livecast.ingest.server:create_service"),
    ("ingest", "livecast.delivery.registry:create_service"),  # after media: stops (unregisters) first
    ("chat", "livecast.chat.tcp:create_service"),
    ("worker", "livecast.api.eventsub.worker:create_service"),
    ("worker", "livecast.subscriptions.worker:create_service"),
    ("worker", "livecast.discovery.worker:create_service"),
    ("worker", "livecast.vod.worker:create_service"),
    ("worker", "livecast.community.worker:create_service"),
    ("api", "livecast.api.eventsub.websocket:create_service"),
]


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # listener says so, and without it small responses wait out the peer's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # we own the signals
        yield


class Runner:
    """Starts and stops everything one ``livecast serve`` process runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.platform: Platform | None = None
        self.services: list[Service] = []
        self.http: _Uvicorn | None = None
        self.http_task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()
        self.hurry = asyncio.Event()
        self.ready = asyncio.Event()

    async def start(self) -> Platform:
        s = self.settings
        platform = await Platform.open(s)
        self.platform = platform
        http_sock = bind_socket(s.host, s.http_port)
        platform.ports["http"] = http_sock.getsockname()[1]
        for role, target in SERVICES:
            if not s.has_role(role):
                continue
            if any(getattr(svc, "target", None) == target for svc in self.services):
                continue  # one service may serve several roles
            module, _, factory = target.partition(":")
            service = getattr(importlib.import_module(module), factory)(platform)
            service.target = target
            ports = await service.start()
            platform.ports.update(ports)
            self.services.append(service)
        app = create_app(platform)
        limits.install(app, platform)  # request body size cap
        security_headers.install(app)
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", ws_max_size=1 << 20,
            timeout_graceful_shutdown=5, ws_ping_interval=None,
        )
        limits.install_protocols(config, platform)  # connections per client address
        self.http = _Uvicorn(config)
        self.http_task = asyncio.create_task(self.http.serve(sockets=[http_sock]))
        while not self.http.started:
            if self.http_task.done():
                self.http_task.result()
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        ports_file = s.data_dir / "ports.json"
        ports_file.write_text(json.dumps(platform.ports, indent=2) + "\n")
        for name, port in platform.ports.items():
            event(log, "listening", role=name, url=_url(name, s.host, port))
        event(log, "livecast ready", roles=",".join(s.roles), data_dir=str(s.data_dir.resolve()))
        self.ready.set()
        return platform

    async def stop(self) -> None:
        event(log, "shutting down")
        await self._drain()
        # Stop accepting first (open connections carry on): clients that services now ask to
        # reconnect elsewhere (chat RECONNECT, EventSub session_reconnect) must not land here
        # again; with SO_REUSEPORT or a balancer in front, they reach a sibling process.
        for listener in getattr(self.http, "servers", None) or []:
            listener.close()
        for service in reversed(self.services):
            await _in_time(service, "stop", service.stop())
        for service in self.services:  # what services publish as they stop (EventSub: stream.offline)
            finish = getattr(service, "after_stop", None)
            if finish is not None:
                await _in_time(service, "finish", finish())
        if self.http is not None and self.http_task is not None:
            self.http.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.http_task, timeout=10)
        if self.platform is not None:
            await self.platform.close()
        event(log, "stopped")

    async def _drain(self) -> None:
        """Graceful drain, before anything stops: services that can (``drain()``: an ingest
        node keeps publishing streams and takes no new ones) get up to LIVECAST_DRAIN_TIMEOUT
        seconds. HTTP still accepts meanwhile, since edges keep fetching those streams. A second
        SIGTERM or SIGINT cuts the drain short."""
        timeout = self.settings.drain_timeout
        draining = [svc.drain() for svc in self.services if timeout > 0 and hasattr(svc, "drain")]
        if not draining:
            return
        event(log, "draining", timeout_s=timeout)
        work = asyncio.ensure_future(asyncio.gather(*draining))
        hurry = asyncio.ensure_future(self.hurry.wait())
        await asyncio.wait({work, hurry}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, hurry):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        event(log, "drained" if work.done() and not work.cancelled() else "drain cut short")

    def _signal(self) -> None:
        if self.stopping.is_set():
            self.hurry.set()  # a second signal: stop now
        self.stopping.set()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._signal)
        await self.start()
        freeze_startup_heap()
        try:
            await self.stopping.wait()
        finally:
            await self.stop()


def freeze_startup_heap() -> None:
    """Move everything built at start-up out of the cyclic garbage collector's sight.

    A serving process holds some 170,000 long-lived objects (modules, the app and its routes,
    SQLAlchemy and Pydantic metadata) and allocates quickly while it answers requests, so
    CPython ran a full collection over all of them every second or so, each pausing the one
    event loop for about 90 ms: under Helix load that was 12% of the CPU and nearly all of
    the p99 (users: 110 ms at a 12 ms p50; 17 ms once frozen). ``gc.freeze`` after a final
    collection leaves later collections only the objects made since. Start-up garbage is
    collected first; what start-up built and later drops is freed by reference counting as
    usual, and only a reference cycle among such objects would outlive it.

    Called by ``livecast serve`` (:meth:`Runner.run_forever`) only: a test process that
    starts and stops many servers in turn must still collect each one's cycles.
    """
    gc.collect()
    gc.freeze()


def _url(name: str, host: str, port: int) -> str:
    scheme = {"http": "http", "rtmp": "rtmp", "irc": "irc"}.get(name, "tcp")
    return f"{scheme}://{host}:{port}"


def run(settings: Settings) -> Any:
    return asyncio.run(Runner(settings).run_forever())
