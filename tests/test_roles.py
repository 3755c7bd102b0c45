"""Role-aware processes: which HTTP components each role mounts, and the stream registry that
lets edges find the ingest node holding a stream (in one process, on the memory bus)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx

from livecast.app import COMPONENT_ROLES, COMPONENTS, components_for
from livecast.config import ALL_ROLES
from livecast.delivery.registry import RegistryService, key_of, lookup
from livecast.platform import Platform
from tests.conftest import start_server, wait_for


def test_all_roles_mount_every_component_in_order() -> None:
    assert components_for(ALL_ROLES) == COMPONENTS
    assert COMPONENTS[-1] == "livecast.web.pages"


def test_each_role_mounts_its_own_components() -> None:
    assert components_for(("worker",)) == ["livecast.api.ops"]
    chat = components_for(("chat",))
    assert "livecast.chat.web" in chat and "livecast.api.helix" not in chat and "livecast.web.pages" not in chat
    ingest = components_for(("ingest",))
    assert ingest[:2] == ["livecast.api.ops", "livecast.delivery.origin"]
    assert not {"livecast.api.helix", "livecast.web.pages", "livecast.chat.web"} & set(ingest)
    api = components_for(("api",))
    assert {"livecast.api.helix", "livecast.api.oauth", "livecast.delivery.routing"} <= set(api)
    assert "livecast.web.pages" not in api and "livecast.delivery.origin" not in api
    assert "livecast.web.pages" in components_for(("web",))
    assert set(COMPONENT_ROLES["livecast.api.ops"]) == set(ALL_ROLES)


async def test_a_chat_process_answers_only_chat_and_ops(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, roles="chat")
    try:
        async with httpx.AsyncClient(base_url=srv.http_url) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
            assert (await http.get("/helix/users")).status_code == 404
            assert (await http.get("/directory")).status_code == 404
            assert (await http.get("/hls/nobody/master.m3u8")).status_code == 404
        assert "irc" in srv.platform.ports and "rtmp" not in srv.platform.ports
    finally:
        await srv.runner.stop()


class _Live:
    def __init__(self) -> None:
        self.ended = False


class _Media:
    def __init__(self) -> None:
        self.streams: dict[str, Any] = {}


async def test_registry_registers_refreshes_and_forgets(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, roles="api", node_name="node-a", origin_url="http://10.0.0.5:8080/")
    platform = srv.platform
    try:
        from livecast.media.service import MediaService

        media = MediaService(platform)  # stands in for the ingest role's media state
        registry = RegistryService(platform)
        media.streams["alice"] = _Live()  # type: ignore[assignment]
        await registry.sync()
        entry = await lookup(platform, "Alice")
        assert entry is not None and entry.node == "node-a" and entry.address == "10.0.0.5:8080"
        async with httpx.AsyncClient(base_url=srv.http_url) as http:
            r = await http.get("/_origin/alice")
            assert r.headers["x-livecast-origin"] == "10.0.0.5:8080" and r.json()["node"] == "node-a"
            r = await http.get("/_origin/bob")
            assert r.status_code == 200 and "x-livecast-origin" not in r.headers and r.json()["node"] is None

        # An ended stream does not take back a channel that another node now holds.
        await platform.bus.set(key_of("alice"), b'{"node":"node-b","origin":"http://10.0.0.6:8080"}', ttl=10)
        media.streams["alice"].ended = True
        registry.written["alice"] = 0.0  # due for a refresh
        await registry.sync()
        entry = await lookup(platform, "alice")
        assert entry is not None and entry.node == "node-b"

        # A stream no longer held is removed only if the entry is still this node's.
        media.streams["carol"] = _Live()  # type: ignore[assignment]
        await registry.sync()
        assert await lookup(platform, "carol") is not None
        del media.streams["carol"]
        await registry.sync()
        assert await lookup(platform, "carol") is None
        del media.streams["alice"]
        await registry.sync()
        assert (await lookup(platform, "alice")) is not None  # node-b's, left alone
    finally:
        await srv.runner.stop()


async def test_registry_entries_expire_without_refresh(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, roles="api", registry_ttl=1)
    try:
        registry = RegistryService(srv.platform)
        assert registry.ttl == 1
        await srv.platform.bus.set(key_of("dave"), registry.entry("dave").encode(), ttl=registry.ttl)
        assert await lookup(srv.platform, "dave") is not None
        assert await wait_for(lambda: _gone(srv.platform, "dave"), timeout=10, interval=0.1)
    finally:
        await srv.runner.stop()


async def _gone(platform: Platform, login: str) -> bool:
    return await lookup(platform, login) is None


async def test_ingest_drain_keeps_its_streams_and_takes_no_new_ones(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, roles="ingest", drain_timeout=60)
    user = await srv.create_user("drainer")
    ingest = srv.platform.state["ingest"]
    publisher = await asyncio.create_subprocess_exec(
        "/usr/bin/ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
        "-i", "testsrc2=size=160x90:rate=15", "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15",
        "-f", "flv", f"rtmp://127.0.0.1:{srv.rtmp_port}/app/{user['stream_key']}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    stopping: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: any(s.publisher is not None for s in ingest.lifecycle.streams.values()), 20)
        stopping = asyncio.create_task(srv.runner.stop())
        await wait_for(lambda: _refused(srv.rtmp_port), 10)  # no new publishers
        live = ingest.lifecycle.streams[user["user_id"]]
        assert live.publisher is not None and not stopping.done()  # the current one goes on
        async with httpx.AsyncClient(base_url=srv.http_url) as http:  # and viewers still get it
            assert (await http.get("/healthz")).status_code == 200
        assert await publisher.wait() == 0  # ffmpeg published its whole input
        await asyncio.wait_for(stopping, 30)  # the drain ends when the publisher has left
    finally:
        if publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
        if stopping is None:
            await srv.runner.stop()
        elif not stopping.done():
            await stopping


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_a_service_that_will_not_stop_is_one_error_line_and_the_rest_stop(
        tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    from livecast import server as server_module

    class Stuck:
        name = "stuck"

        async def start(self) -> dict[str, int]:
            return {}

        async def stop(self) -> None:
            await asyncio.sleep(3600)

    class Later(Stuck):
        name, stopped = "later", False

        async def stop(self) -> None:
            self.stopped = True

    later = Later()
    caplog.set_level(logging.INFO, "livecast.server")
    srv = await start_server(tmp_path, roles="worker")
    srv.runner.services.insert(0, later)
    srv.runner.services.append(Stuck())  # stopped first (in reverse): the rest still stop after it
    monkeypatch.setattr(server_module, "STOP_S", 0.2)
    await asyncio.wait_for(srv.runner.stop(), 10)
    stuck = [r for r in caplog.records if r.getMessage() == "service did not stop in time"]
    assert len(stuck) == 1 and stuck[0].exc_info is None and stuck[0].kv["service"] == "stuck"
    assert later.stopped and any(r.getMessage() == "stopped" for r in caplog.records)
