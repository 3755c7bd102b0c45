"""The scale-out layout on the real engines: ``livecast.cluster`` starts role-split processes
(two ingest nodes, two chat processes on one shared IRC port, two API nodes, a worker) on
PostgreSQL and Redis, with two nginx edges (deploy/nginx/edge.conf) in front.

Shown here: a stream published with ffmpeg to ingest node 2 plays through both edges (the edge
finds the owning origin through the router and the stream registry); identical blocking LL-HLS
requests through an edge reach the origin once (nginx's cache lock); a killed ingest node's
registry entry expires; Helix rate limits hold across the two API processes; chat and bans
cross chat processes, and tmi.js behind the edge follows RECONNECT to the other process when
its own stops; an EventSub WebSocket session moves to the other API process when its own stops.
A missing nginx, PostgreSQL or Redis fails these tests: they exist to prove those engines work.
The processes are killed in a fixed order (ingest-2, a chat process, api-1), so the tests run
in file order on one module-scoped cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import websockets

from livecast.cluster import ClusterState, Node, down, stop_pid, up
from livecast.config import load_settings
from livecast.identity import service as identity
from livecast.protocols import irc
from livecast.store.db import Database
from tests.conftest import REDIS_URL, create_pg_database, drop_pg_database, wait_for
from tests.test_chat_clients import NodeScript

ROOT = Path(__file__).resolve().parent.parent
FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"
RATE_LIMIT = 20  # Helix points per minute per client id, low so that a test can spend them
PLAYLIST_ROUTE = 'route="/hls/{login}/{rendition}/playlist.m3u8"'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    url = asyncio.run(create_pg_database())
    run_dir = tmp_path_factory.mktemp("cluster")
    try:
        state = up(run_dir, 0, url, REDIS_URL, f"file://{run_dir / 'objects'}", layout="small", edges=2,
                   registry_ttl=3, env={"LIVECAST_HELIX_RATE_LIMIT": str(RATE_LIMIT)})
        yield state
    finally:
        down(run_dir)
        asyncio.run(drop_pg_database(url))


async def create_user(state: ClusterState, login: str, scopes: list[str] | None = None) -> dict[str, Any]:
    settings = load_settings({}, database_url=state.database_url, data_dir=state.run_dir)
    db = Database(settings.resolved_database_url)
    try:
        async with db.session() as session:
            user, key = await identity.create_user(session, login)
            app = await identity.ensure_admin_app(session)
            token = await identity.issue_token(session, app.client_id, user.id,
                                               identity.ALL_SCOPES if scopes is None else scopes)
    finally:
        await db.close()
    return {"user_id": user.id, "login": user.login, "stream_key": key, "token": token.access_token,
            "client_id": app.client_id}


def origin_playlist_requests(metrics_text: str) -> float:
    """Media playlist requests an origin answered so far (any status), from its /metrics."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("livecast_http_requests_total{") and PLAYLIST_ROUTE in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as client:
        yield client


async def test_stream_on_ingest_2_plays_through_both_edges_and_expires_when_killed(
        cluster: ClusterState, http: httpx.AsyncClient) -> None:
    login = "edge" + uuid.uuid4().hex[:8]
    user = await create_user(cluster, login)
    ingest2, api = cluster.node("ingest-2"), cluster.node("api-1")
    edge1, edge2 = cluster.edge("edge-1"), cluster.edge("edge-2")
    publisher = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440", "-t", "80", "-c:v", "libx264", "-preset", "ultrafast",
         "-tune", "zerolatency", "-g", "30", "-c:a", "aac", "-b:a", "64k", "-f", "flv",
         f"rtmp://127.0.0.1:{ingest2.rtmp_port}/app/{user['stream_key']}",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # The router knows which node holds the stream (registered by ingest-2 itself).
        async def routed() -> dict[str, Any] | None:
            doc: dict[str, Any] = (await http.get(f"{api.url}/_origin/{login}")).json()
            return doc if doc["node"] else None

        route = await wait_for(routed, timeout=30, interval=0.2)
        assert route["node"] == "ingest-2" and route["origin"] == ingest2.url

        # Both edges serve the master and media playlists, which exist only on ingest-2.
        base1, base2 = f"{edge1.url}/hls/{login}", f"{edge2.url}/hls/{login}"

        async def has_segment() -> m3u8.M3U8 | None:
            r = await http.get(f"{base1}/source/playlist.m3u8")
            pl = m3u8.loads(r.text) if r.status_code == 200 else None
            return pl if pl is not None and any(s.uri for s in pl.segments) else None

        playlist = await wait_for(has_segment, timeout=30, interval=0.3)
        for base in (base1, base2):
            master = await http.get(f"{base}/master.m3u8")
            assert master.status_code == 200, master.text
            assert [p.uri for p in m3u8.loads(master.text).playlists] == ["source/playlist.m3u8",
                                                                          "audio_only/playlist.m3u8"]
        assert (await http.get(f"{ingest2.url}/hls/{login}/master.m3u8")).status_code == 200
        assert (await http.get(cluster.node("ingest-1").url + f"/hls/{login}/master.m3u8")).status_code == 404

        # A segment through edge 2 decodes; a second fetch is a cache hit.
        init_uri = playlist.segment_map[0].uri
        seg_uri = next(s.uri for s in playlist.segments if s.uri)
        init = await http.get(f"{base2}/source/{init_uri}")
        seg = await http.get(f"{base2}/source/{seg_uri}")
        assert init.status_code == 200 and seg.status_code == 200
        again = await http.get(f"{base2}/source/{seg_uri}")
        assert again.headers["x-cache-status"] == "HIT" and again.content == seg.content
        with tempfile.NamedTemporaryFile(suffix=".mp4") as fh:
            fh.write(init.content + seg.content)
            fh.flush()
            probe = await asyncio.to_thread(ffprobe, fh.name)
        assert {s["codec_name"] for s in probe["streams"]} == {"h264", "aac"}
        # and ffprobe plays the live LL-HLS playlist through edge 1
        probe = await asyncio.to_thread(ffprobe, f"{base1}/source/playlist.m3u8")
        assert any(s["codec_name"] == "h264" and s["width"] == 320 for s in probe["streams"])

        # Identical blocking requests for the next part: one origin request for all of them.
        body = (await http.get(f"{ingest2.url}/hls/{login}/source/playlist.m3u8")).text
        hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"', body)
        assert hint is not None
        before = origin_playlist_requests((await http.get(f"{ingest2.url}/metrics")).text)
        params = {"_HLS_msn": hint[1], "_HLS_part": hint[2]}
        answers = await asyncio.gather(*(http.get(f"{base1}/source/playlist.m3u8", params=params)
                                         for _ in range(30)))
        after = origin_playlist_requests((await http.get(f"{ingest2.url}/metrics")).text)
        assert {r.status_code for r in answers} == {200}
        assert len({r.text for r in answers}) == 1
        assert f"part{hint[1]}.{hint[2]}.m4s" in answers[0].text.split("PRELOAD-HINT")[0]
        assert after - before == 1, f"{after - before} origin requests for 30 identical blocking requests"

        # Kill ingest-2 outright: nobody unregisters, the entry expires (TTL 3 s here).
        stop_pid(ingest2.pid, timeout=0, sig=signal.SIGKILL)
        gone = await wait_for(lambda: _no_route(http, api.url, login), timeout=20, interval=0.25)
        assert gone
        assert await wait_for(lambda: _edge_says_404(http, base1), timeout=20, interval=0.25)
    finally:
        if publisher.returncode is None:
            publisher.kill()
        await publisher.wait()


def ffprobe(target: str) -> dict[str, Any]:
    out = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-of", "json", target],
                         capture_output=True, timeout=60, check=True)
    return dict(json.loads(out.stdout))


async def _no_route(http: httpx.AsyncClient, api_url: str, login: str) -> bool:
    return (await http.get(f"{api_url}/_origin/{login}")).json()["node"] is None


async def _edge_says_404(http: httpx.AsyncClient, base: str) -> bool:
    return (await http.get(f"{base}/master.m3u8")).status_code == 404


async def test_helix_rate_limit_holds_across_two_api_processes(cluster: ClusterState,
                                                                http: httpx.AsyncClient) -> None:
    api1, api2 = cluster.node("api-1"), cluster.node("api-2")
    headers = {"Client-Id": "rl" + uuid.uuid4().hex, "Authorization": "Bearer nope"}
    remaining = []
    limited = {api1.name: 0, api2.name: 0}
    for i in range(2 * RATE_LIMIT):
        node = (api1, api2)[i % 2]
        r = await http.get(f"{node.url}/helix/users", headers=headers)
        if r.status_code == 429:
            limited[node.name] += 1
        else:
            assert r.status_code == 401  # the bucket is charged before authentication
            remaining.append(int(r.headers["ratelimit-remaining"]))
    # one bucket: each process saw the other's requests, and both refuse once it is empty
    assert remaining[:4] == sorted(remaining[:4], reverse=True) and len(set(remaining[:4])) == 4
    assert limited[api1.name] > 0 and limited[api2.name] > 0
    assert len(remaining) < 2 * RATE_LIMIT


class WsChat:
    """A tmi.js-like IRC-over-WebSocket client (subprotocol ``irc``)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.lines: list[irc.Message] = []
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> WsChat:
        return cls(await websockets.connect(url, subprotocols=[websockets.Subprotocol("irc")]))

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                text = frame if isinstance(frame, str) else frame.decode()
                self.lines.extend(irc.parse(line) for line in text.split("\r\n") if line)
        except websockets.ConnectionClosed:
            pass

    async def send(self, *lines: str) -> None:
        await self.ws.send("".join(line + "\r\n" for line in lines))

    async def expect(self, command: str, pred: Any = None, timeout: float = 10.0) -> irc.Message:
        def find() -> irc.Message | None:
            return next((m for m in self.lines if m.command == command and (pred is None or pred(m))), None)
        found: irc.Message = await wait_for(find, timeout=timeout)
        return found

    async def login(self, nick: str, token: str, channel: str) -> None:
        await self.send("CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership",
                        f"PASS oauth:{token}", f"NICK {nick}", f"JOIN #{channel}")
        await self.expect("ROOMSTATE", lambda m: m.params[0] == f"#{channel}")

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


async def test_chat_and_bans_cross_chat_processes_and_the_edge(cluster: ClusterState) -> None:
    suffix = uuid.uuid4().hex[:8]
    owner = await create_user(cluster, "own" + suffix)
    viewer = await create_user(cluster, "view" + suffix, ["chat:read", "chat:edit"])
    other = await create_user(cluster, "oth" + suffix, ["chat:read", "chat:edit"])
    room = owner["login"]
    chat1, chat2 = cluster.node("chat-1"), cluster.node("chat-2")
    assert chat1.irc_port == chat2.irc_port  # one IRC port, two processes (SO_REUSEPORT)
    on1 = await WsChat.connect(f"ws://127.0.0.1:{chat1.http_port}/")
    on2 = await WsChat.connect(f"ws://127.0.0.1:{chat2.http_port}/")
    via_edge = await WsChat.connect(f"ws://127.0.0.1:{cluster.edge('edge-1').port}/")
    try:
        await on1.login(viewer["login"], viewer["token"], room)
        await on2.login(owner["login"], owner["token"], room)
        await via_edge.login(other["login"], other["token"], room)

        await on1.send(f"PRIVMSG #{room} :hello from process 1")
        await on2.expect("PRIVMSG", lambda m: m.params[-1] == "hello from process 1")
        await via_edge.expect("PRIVMSG", lambda m: m.params[-1] == "hello from process 1")
        await on2.send(f"PRIVMSG #{room} :hello from process 2")
        got = await on1.expect("PRIVMSG", lambda m: m.params[-1] == "hello from process 2")
        assert got.tags["display-name"] == owner["login"]

        # A ban given on process 2 holds on process 1.
        await on2.send(f"PRIVMSG #{room} :/ban {viewer['login']}")
        await on2.expect("NOTICE", lambda m: m.tags.get("msg-id") == "ban_success")
        await on1.expect("CLEARCHAT", lambda m: m.params[-1] == viewer["login"])
        await wait_for(lambda: _banned_here(on1, room), timeout=10, interval=0.5)

        # tmi.js through the edge; stopping the chat process it landed on sends RECONNECT, and
        # tmi.js comes back through the edge to the other process and misses nothing after that.
        edge = cluster.edge("edge-1")
        fan = await create_user(cluster, "tmi" + suffix, ["chat:read", "chat:edit"])
        before = {n.name: await _ws_connections(n) for n in (chat1, chat2)}
        node = NodeScript(await asyncio.create_subprocess_exec(
            "/usr/bin/node", str(ROOT / "tests/js/cluster_tmi.js"), str(edge.port), fan["login"], fan["token"],
            room, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        sender: WsChat | None = None
        try:
            await node.expect(event="joined")
            after = {n.name: await _ws_connections(n) for n in (chat1, chat2)}
            holder = next(n for n in (chat1, chat2) if after[n.name] > before[n.name])
            survivor = chat2 if holder is chat1 else chat1
            await asyncio.to_thread(stop_pid, holder.pid)
            await node.expect(event="disconnected")
            await wait_for(lambda: sum(e["event"] == "joined" for e in node.events) >= 2, timeout=20)
            sender = await WsChat.connect(f"ws://127.0.0.1:{survivor.http_port}/")
            await sender.login(other["login"], other["token"], room)
            for i in range(5):
                await sender.send(f"PRIVMSG #{room} :after the move {i}")
            for i in range(5):
                await node.expect(event="message", message=f"after the move {i}")
            node.send(op="say", text="from tmi.js after the move")
            await sender.expect("PRIVMSG", lambda m: m.params[-1] == "from tmi.js after the move")
        finally:
            await node.close()
            if sender is not None:
                await sender.close()
    finally:
        for client in (on1, on2, via_edge):
            await client.close()


async def _ws_connections(node: Node) -> float:
    """Open IRC-over-WebSocket connections on one chat process, from its /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{node.url}/metrics")).text
    line = next((x for x in text.splitlines() if x.startswith('livecast_chat_connections{transport="websocket"}')),
                "none 0")
    return float(line.rsplit(" ", 1)[1])


async def _banned_here(client: WsChat, room: str) -> bool:
    """Send once and see whether process 1 refuses it as banned (the ban may take a moment)."""
    seen = len(client.lines)
    await client.send(f"PRIVMSG #{room} :may I speak")
    await asyncio.sleep(0.3)
    return any(m.command == "NOTICE" and m.tags.get("msg-id") == "msg_banned" for m in client.lines[seen:])


def test_cluster_command_without_a_cluster(tmp_path: Path) -> None:
    """``livecast cluster`` (scripts/cluster's Python side) says so when nothing runs there."""
    for action, code in (("status", 1), ("down", 0)):
        out = subprocess.run([sys.executable, "-m", "livecast", "cluster", action, "--dir", str(tmp_path)],
                             capture_output=True, text=True, env={**os.environ})
        assert out.returncode == code and "no cluster running here" in out.stdout, out


async def test_eventsub_session_moves_when_its_api_process_stops(cluster: ClusterState,
                                                                 http: httpx.AsyncClient) -> None:
    owner = await create_user(cluster, "es" + uuid.uuid4().hex[:8])
    api1, edge = cluster.node("api-1"), cluster.edge("edge-1")
    h = {"Client-Id": owner["client_id"], "Authorization": f"Bearer {owner['token']}"}
    async with websockets.connect(f"ws://127.0.0.1:{api1.http_port}/ws") as ws:
        session = (await _next_message(ws, "session_welcome"))["payload"]["session"]
        r = await http.post(f"{edge.url}/helix/eventsub/subscriptions", headers=h, json={
            "type": "channel.update", "version": "2", "condition": {"broadcaster_user_id": owner["user_id"]},
            "transport": {"method": "websocket", "session_id": session["id"]}})
        assert r.status_code == 202, r.text

        # SIGTERM: the process stops accepting, asks the session to reconnect, waits for it.
        stopping = asyncio.create_task(asyncio.to_thread(stop_pid, api1.pid))
        reconnect = await _next_message(ws, "session_reconnect")
        url = reconnect["payload"]["session"]["reconnect_url"]
        assert url.startswith(f"ws://127.0.0.1:{edge.port}/ws?")  # through the edge, to a live api node
        async with websockets.connect(url) as moved:
            welcome = await _next_message(moved, "session_welcome")
            assert welcome["payload"]["session"]["id"] == session["id"]
            await stopping
            r = await http.patch(f"{edge.url}/helix/channels", params={"broadcaster_id": owner["user_id"]},
                                 headers=h, json={"title": "after the move"})
            assert r.status_code == 204, r.text
            note = await _next_message(moved, "notification")
            assert note["payload"]["event"]["title"] == "after the move"


async def _next_message(ws: Any, kind: str) -> dict[str, Any]:
    """The next EventSub message of ``kind``, skipping keepalives (for 20 s at most)."""
    async def find() -> dict[str, Any]:
        while True:
            doc: dict[str, Any] = json.loads(await ws.recv())
            if doc["metadata"]["message_type"] == kind:
                return doc
    return await asyncio.wait_for(find(), 20)
