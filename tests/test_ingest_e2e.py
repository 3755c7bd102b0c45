"""End to end: a real ffmpeg publishing over RTMP to a whole platform on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from livecast.identity.models import Channel
from livecast.ingest.models import Stream
from livecast.protocols import flv
from livecast.protocols.rtmp import amf0, chunk
from tests.conftest import REDIS_URL, Server, start_server, wait_for

FFMPEG = "/usr/bin/ffmpeg"


async def ffmpeg_publish(port: int, key: str, seconds: float, size: str = "640x360") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-f", "lavfi", "-i", "sine",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-c:a", "aac",
        "-f", "flv", f"rtmp://127.0.0.1:{port}/app/{key}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def streams_of(server: Server, user_id: str) -> list[Stream]:
    async with server.platform.db.session() as db:
        rows = await db.execute(select(Stream).where(Stream.user_id == user_id).order_by(Stream.started_at))
        return list(rows.scalars().all())


@contextlib.asynccontextmanager
async def bus_events(server: Server) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Collect ``event.stream.*`` messages from the bus while the block runs."""
    seen: list[tuple[str, dict[str, Any]]] = []
    sub = await server.platform.bus.subscribe("event.stream.*")

    async def collect() -> None:
        async for channel, data in sub:
            seen.append((channel, json.loads(data)))

    task = asyncio.create_task(collect())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sub.close()


def topics(seen: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [channel for channel, _ in seen]


async def test_publish_goes_live_with_health_then_offline_after_window(server: Server) -> None:
    user = await server.create_user("caster")
    async with server.platform.db.session() as db:
        channel = await db.get(Channel, user["user_id"])
        assert channel is not None
        channel.title, channel.category_id, channel.category_name = "Speedrun night", "509658", "Just Chatting"
        channel.language, channel.tags = "de", ["German", "Speedrun"]
    async with bus_events(server) as seen:
        proc = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 5)

        async def live_row() -> Stream | None:
            rows = await streams_of(server, user["user_id"])
            return rows[0] if rows and rows[0].status == "live" else None

        row = await wait_for(live_row, timeout=15)
        assert (row.title, row.category_id, row.category_name, row.language, row.tags) == (
            "Speedrun night", "509658", "Just Chatting", "de", ["German", "Speedrun"])
        await wait_for(lambda: "event.stream.online" in topics(seen))
        online = dict(seen)["event.stream.online"]
        assert online["id"] == row.id
        assert online["broadcaster_user_id"] == user["user_id"]
        assert online["broadcaster_user_login"] == "caster"
        assert online["type"] == "live"
        assert online["started_at"].endswith("Z")

        async def measured() -> dict[str, Any] | None:
            rows = await streams_of(server, user["user_id"])
            health = rows[0].health
            return health if health.get("keyframe_interval") and health.get("fps") else None

        health = await wait_for(measured, timeout=15)
        assert health["resolution"] == "640x360"
        assert health["width"] == 640 and health["height"] == 360
        assert health["fps"] == pytest.approx(30, abs=2)
        assert health["keyframe_interval"] == pytest.approx(2.0, abs=0.1)
        assert health["video_codec"].startswith("avc1.")
        assert health["audio_codec"] == "mp4a.40.2"
        assert health["audio_sample_rate"] == 44100 and health["audio_channels"] == 1
        assert health["bitrate_kbps"] > 10

        code, err = await finish(proc)
        assert code == 0, err
        # The publisher left: reconnecting first, offline only after the 5 s window.
        await wait_for(lambda: _status(server, user["user_id"], "reconnecting"), timeout=5)
        assert "event.stream.offline" not in topics(seen)
        await wait_for(lambda: _status(server, user["user_id"], "offline"), timeout=10)
        await wait_for(lambda: "event.stream.offline" in topics(seen))
        offline = dict(seen)["event.stream.offline"]
        assert offline["broadcaster_user_id"] == user["user_id"] and offline["id"] == row.id
    rows = await streams_of(server, user["user_id"])
    assert len(rows) == 1 and rows[0].ended_at is not None


async def _status(server: Server, user_id: str, status: str) -> bool:
    rows = await streams_of(server, user_id)
    return bool(rows) and rows[-1].status == status


async def test_wrong_key_and_second_publisher_are_refused(server: Server) -> None:
    user = await server.create_user("solo")
    first = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 7)
    await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=15)

    wrong = await ffmpeg_publish(server.rtmp_port, user["stream_key"] + "x", 2)
    code, err = await finish(wrong)
    assert code != 0, "a wrong stream key must be refused"
    assert "invalid stream key" in err
    second = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 2)
    code, err = await finish(second)
    assert code != 0, "a second publisher must be refused"
    assert "stream already publishing" in err

    # The first publisher was never disturbed (it ends normally) and the server still serves.
    code, err = await finish(first)
    assert code == 0, err
    rows = await streams_of(server, user["user_id"])
    assert len(rows) == 1


async def test_reconnect_inside_window_continues_the_same_stream(pg_server: Server) -> None:
    server = pg_server  # this one on PostgreSQL
    user = await server.create_user("flaky")
    async with bus_events(server) as seen:
        code, err = await finish(await ffmpeg_publish(server.rtmp_port, user["stream_key"], 2))
        assert code == 0, err
        await wait_for(lambda: _status(server, user["user_id"], "reconnecting"), timeout=5)
        first = (await streams_of(server, user["user_id"]))[0].id

        again = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 2)
        await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=10)
        code, err = await finish(again)
        assert code == 0, err
        rows = await streams_of(server, user["user_id"])
        assert [r.id for r in rows] == [first]
        assert topics(seen).count("event.stream.online") == 1
        assert "event.stream.offline" not in topics(seen)


# A hand-written publisher, for what ffmpeg will not send ---------------------------------------


class RawPublisher:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = chunk.ChunkParser()
        self.messages: list[chunk.Message] = []

    @classmethod
    async def connect(cls, port: int) -> RawPublisher:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x03" + bytes(1536))
        s0s1s2 = await reader.readexactly(1 + 1536 * 2)
        assert s0s1s2[0] == 3 and s0s1s2[1 + 1536 :] == bytes(1536)  # S2 echoes C1
        writer.write(s0s1s2[1 : 1 + 1536])  # C2 echoes S1
        return cls(reader, writer)

    def command(self, *values: Any, stream_id: int = 0) -> None:
        self.writer.write(chunk.serialize(3, chunk.COMMAND_AMF0, stream_id, 0, amf0.encode(*values), 128))

    async def status(self, timeout: float = 10) -> dict[str, Any]:
        """The next onStatus info object from the server."""
        while True:
            for msg in self.messages:
                if msg.type_id == chunk.COMMAND_AMF0:
                    values = amf0.decode_all(msg.payload)
                    if values[0] == "onStatus":
                        self.messages.remove(msg)
                        return dict(values[3])
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            assert data, "connection closed before onStatus"
            self.messages += self.parser.feed(data)

    async def publish(self, key: str) -> dict[str, Any]:
        self.command("connect", 1, {"app": "app", "tcUrl": "rtmp://127.0.0.1/app", "type": "nonprivate"})
        self.command("createStream", 2, None)
        self.command("publish", 3, None, key, "live", stream_id=1)
        return await self.status()

    async def closed(self, timeout: float = 10) -> bool:
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass
        return True


async def test_garbage_closes_one_connection_and_enhanced_rtmp_is_refused(server: Server) -> None:
    user = await server.create_user("steady")
    other = await server.create_user("fancy")
    good = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 5)
    await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=15)

    # Garbage after the handshake: a chunk continuing a message that never started.
    junk = await RawPublisher.connect(server.rtmp_port)
    junk.writer.write(b"\x43\x00\x00\x00" + bytes(200))
    assert await junk.closed()

    # Enhanced RTMP (HEVC by FourCC): a clear refusal, then the connection is closed.
    fancy = await RawPublisher.connect(server.rtmp_port)
    status = await fancy.publish(other["stream_key"])
    assert status["code"] == "NetStream.Publish.Start"
    fancy.writer.write(chunk.serialize(6, chunk.VIDEO, 1, 0, b"\x90hvc1" + bytes(40), 128))
    status = await fancy.status()
    assert status["code"] == "NetStream.Publish.Rejected"
    assert status["description"] == "codec not supported: hvc1"
    assert await fancy.closed()
    # Refused, not dropped: offline at once, without waiting for the reconnect window.
    await wait_for(lambda: _status(server, other["user_id"], "offline"), timeout=3)

    # A wrong key from a hand-written client gets BadName.
    bad = await RawPublisher.connect(server.rtmp_port)
    status = await bad.publish("live_nope")
    assert (status["level"], status["code"]) == ("error", "NetStream.Publish.BadName")
    assert await bad.closed()

    code, err = await finish(good)
    assert code == 0, err


class RecordingMedia:
    """Wraps the real media service and records what ingest hands it, in order."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[str] = []
        self.infos: list[Any] = []

    async def open_stream(self, info: Any) -> Any:
        self.calls.append("open")
        self.infos.append(info)
        return RecordingSession(self, await self.real.open_stream(info))


class RecordingSession:
    def __init__(self, media: RecordingMedia, real: Any) -> None:
        self.media, self.real = media, real
        self.reader = flv.FLVReader()

    def feed(self, data: bytes) -> None:
        if data.startswith(b"FLV"):
            self.media.calls.append("header")
            self.reader = flv.FLVReader()
        for tag in self.reader.feed(data):
            name = {flv.AUDIO: "audio", flv.VIDEO: "video", flv.SCRIPT: "script"}[tag.tag_type]
            if not self.media.calls[-1].startswith(name):
                self.media.calls.append(name)
        self.real.feed(data)

    async def publisher_lost(self) -> None:
        self.media.calls.append("lost")
        await self.real.publisher_lost()

    async def publisher_resumed(self) -> None:
        self.media.calls.append("resumed")
        await self.real.publisher_resumed()

    async def close(self) -> None:
        self.media.calls.append("close")
        await self.real.close()


def collapse(calls: list[str]) -> list[str]:
    """Runs of interleaved audio/video/script tags read as one "tags"."""
    out: list[str] = []
    for call in calls:
        call = "tags" if call in {"audio", "video", "script"} else call
        if not out or out[-1] != call or call != "tags":
            out.append(call)
    return out


async def test_media_hand_off_across_a_reconnect_and_shutdown(server: Server) -> None:
    media = RecordingMedia(server.platform.state["media"])
    server.platform.state["media"] = media
    user = await server.create_user("handoff", partner=True)
    async with bus_events(server) as seen:
        code, err = await finish(await ffmpeg_publish(server.rtmp_port, user["stream_key"], 1.5, size="320x180"))
        assert code == 0, err
        await wait_for(lambda: "lost" in media.calls, timeout=5)
        again = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 4, size="320x180")
        await wait_for(lambda: media.calls.count("header") == 2 and "video" in media.calls[-3:], timeout=10)
        # Service stop (shutdown) ends the stream at once, without waiting for the window.
        await server.platform.state["ingest"].stop()
        code, _ = await finish(again)
        assert code != 0  # the server hung up on it
        assert await _status(server, user["user_id"], "offline")
        await wait_for(lambda: "event.stream.offline" in topics(seen))
    assert collapse(media.calls) == ["open", "header", "tags", "lost", "resumed", "header", "tags", "close"]
    assert media.calls[1:4] == ["header", "script", "video"]  # onMetaData, then the AVC sequence header
    info = media.infos[0]
    assert info.login == "handoff" and info.broadcaster_type == "partner" and info.user_id == user["user_id"]
    assert info.metadata["width"] == 320.0
    assert info.health["resolution"] == "320x180"


async def test_idle_timeout_and_connections_per_address(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, rtmp_idle_timeout=1, rtmp_max_connections_per_ip=2, roles="ingest")
    try:
        first = await RawPublisher.connect(srv.rtmp_port)
        second = await RawPublisher.connect(srv.rtmp_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.rtmp_port)
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # third from one address: refused
        writer.close()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await first.closed(timeout=5) and await second.closed(timeout=5)  # idle: dropped
        assert loop.time() - started < 4
        third = await RawPublisher.connect(srv.rtmp_port)  # slots are free again
        third.writer.close()
    finally:
        await srv.runner.stop()


async def test_channel_live_on_another_node_refuses_a_second_publisher(tmp_path: Path) -> None:
    """Two ingest nodes sharing one database and a Redis bus, as in the scaled-out deployment."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    node_a = await start_server(tmp_path / "a", database_url=db, bus_url=REDIS_URL, roles="ingest", node_name="a")
    node_b = await start_server(tmp_path / "b", database_url=db, bus_url=REDIS_URL, roles="ingest", node_name="b")
    try:
        user = await node_a.create_user("twonodes")
        first = await ffmpeg_publish(node_a.rtmp_port, user["stream_key"], 5)
        await wait_for(lambda: _status(node_a, user["user_id"], "live"), timeout=15)
        code, err = await finish(await ffmpeg_publish(node_b.rtmp_port, user["stream_key"], 2))
        assert code != 0 and "stream already publishing" in err
        code, err = await finish(first)
        assert code == 0, err
        rows = await streams_of(node_b, user["user_id"])
        assert len(rows) == 1 and rows[0].node_id == "a"
    finally:
        await node_b.runner.stop()
        await node_a.runner.stop()


async def test_streams_left_live_by_a_crash_end_when_the_node_restarts(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    srv = await start_server(tmp_path / "1", database_url=db, roles="ingest", node_name="n1")
    try:
        user = await srv.create_user("crashy")
        async with srv.platform.db.session() as session:
            session.add(Stream(user_id=user["user_id"], status="live", node_id="n1"))
            session.add(Stream(user_id=user["user_id"], status="live", node_id="elsewhere"))
    finally:
        await srv.runner.stop()
    srv = await start_server(tmp_path / "2", database_url=db, roles="ingest", node_name="n1")
    try:
        rows = {r.node_id: r.status for r in await streams_of(srv, user["user_id"])}
        assert rows == {"n1": "offline", "elsewhere": "live"}  # another node's stream is its own business
    finally:
        await srv.runner.stop()


async def test_media_failure_refuses_the_publish_and_leaves_nothing_behind(server: Server) -> None:
    class BrokenMedia:
        async def open_stream(self, info: Any) -> Any:
            raise RuntimeError("no transcoder today")

    real = server.platform.state["media"]
    server.platform.state["media"] = BrokenMedia()
    user = await server.create_user("unlucky")
    code, err = await finish(await ffmpeg_publish(server.rtmp_port, user["stream_key"], 2))
    assert code != 0 and "media service unavailable" in err
    assert await streams_of(server, user["user_id"]) == []
    server.platform.state["media"] = real
    # The failed attempt released its claim: the next publish goes live.
    proc = await ffmpeg_publish(server.rtmp_port, user["stream_key"], 2)
    await wait_for(lambda: _status(server, user["user_id"], "live"), timeout=15)
    code, err = await finish(proc)
    assert code == 0, err


async def test_shutdown_ends_streams_when_a_connection_swallows_its_cancel(tmp_path: Path) -> None:
    """On Python 3.11 ``asyncio.wait_for`` returns the result, and drops the cancel, when both
    land together; a publisher's read loop then goes on reading. Stop must cancel again, and
    end the streams whatever a connection does (it hung until the 10 s stop limit before)."""
    srv = await start_server(tmp_path, roles="ingest")
    ingest = srv.platform.state["ingest"]
    publisher = None
    swallowed = asyncio.Event()

    async def stubborn() -> None:  # stands in for the connection that lost its cancel
        try:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed.set()
            await asyncio.sleep(3600)
        finally:
            ingest._tasks.discard(asyncio.current_task())  # as a real connection does

    try:
        user = await srv.create_user("stubborn")
        async with bus_events(srv) as seen:
            publisher = await ffmpeg_publish(srv.rtmp_port, user["stream_key"], 30, size="320x180")
            await wait_for(lambda: _status(srv, user["user_id"], "live"), timeout=15)
            task = asyncio.create_task(stubborn())
            ingest._tasks.add(task)
            await asyncio.wait_for(ingest.stop(), 8)  # hung forever before
            assert swallowed.is_set() and task.cancelled() and not ingest._tasks
            assert await _status(srv, user["user_id"], "offline")
            await wait_for(lambda: "event.stream.offline" in topics(seen))
            code, _ = await finish(publisher)
            assert code != 0  # the server hung up on it
    finally:
        if publisher is not None and publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
        await srv.runner.stop()
