"""Real third-party clients against a running Livecast: pyTwitchAPI and twurple (npm).

stream.online is driven through the bus here (``publish_event``), as the RTMP ingest does when
a publisher goes live; the ffmpeg end-to-end path is covered where ingest is tested.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from twitchAPI.eventsub.webhook import EventSubWebhook
from twitchAPI.eventsub.websocket import EventSubWebsocket
from twitchAPI.object.eventsub import StreamOnlineEvent
from twitchAPI.twitch import Twitch
from twitchAPI.type import AuthScope

from livecast.api.eventsub.models import EventSubSubscription
from livecast.api.eventsub.worker import EventSubWorker
from livecast.bus import publish_event
from tests.conftest import Server, start_server, wait_for
from tests.helix_support import add_stream, app_with_tokens

ROOT = Path(__file__).resolve().parent.parent


def online_event(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": "9001", "broadcaster_user_id": user["user_id"], "broadcaster_user_login": user["login"],
            "broadcaster_user_name": user["login"], "type": "live", "started_at": "2026-01-01T00:00:00Z"}


async def pytwitch(server: Server, user: dict[str, Any]) -> tuple[Twitch, str]:
    client_id, secret, _app, tokens = await app_with_tokens(server, [user["user_id"]])
    twitch = await Twitch(client_id, secret, base_url=f"{server.http_url}/helix/",
                          auth_base_url=f"{server.http_url}/oauth2/")
    access, refresh = tokens[user["user_id"]]
    scopes = [AuthScope.CHANNEL_MANAGE_BROADCAST, AuthScope.USER_READ_EMAIL]
    await twitch.set_user_authentication(access, scopes, refresh)
    return twitch, client_id


async def test_pytwitchapi_helix_and_eventsub_websocket(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    await add_stream(server, bob["user_id"], viewers=7, title="bob live")
    twitch, _ = await pytwitch(server, alice)
    try:
        users = [u async for u in twitch.get_users(logins=["alice", "bob"])]
        assert sorted(u.login for u in users) == ["alice", "bob"]
        streams = [s async for s in twitch.get_streams(first=10)]
        assert [(s.user_login, s.viewer_count, s.title) for s in streams] == [("bob", 7, "bob live")]
        assert await twitch.modify_channel_information(alice["user_id"], title="pyTwitchAPI title") is True
        info = await twitch.get_channel_information(alice["user_id"])
        assert info[0].title == "pyTwitchAPI title"

        received: list[StreamOnlineEvent] = []
        eventsub = EventSubWebsocket(twitch, connection_url=f"{server.http_url.replace('http', 'ws')}/ws",
                                     subscription_url=f"{server.http_url}/helix/")
        await asyncio.to_thread(eventsub.start)
        try:
            async def on_online(event: StreamOnlineEvent) -> None:
                received.append(event)

            await eventsub.listen_stream_online(alice["user_id"], on_online)
            await publish_event(server.platform.bus, "stream.online", online_event(alice))
            await wait_for(lambda: received, timeout=10)
            assert received[0].event.broadcaster_user_login == "alice"
            assert received[0].event.type == "live"
        finally:
            await eventsub.stop()
    finally:
        await twitch.close()


async def test_pytwitchapi_webhook_receiver(tmp_path: Path) -> None:
    """pyTwitchAPI's EventSubWebhook verifies our challenge and signature; a tampered body is refused."""
    server = await start_server(tmp_path, eventsub_allow_private_callbacks=True)
    worker = next(s for s in server.runner.services if isinstance(s, EventSubWorker))
    sent: list[tuple[dict[str, str], bytes]] = []

    async def record(request: Any) -> None:
        sent.append((dict(request.headers), request.content))

    assert worker.client is not None
    worker.client.event_hooks["request"].append(record)
    alice = await server.create_user("alice")
    twitch, _ = await pytwitch(server, alice)
    port = _free_port()
    # pyTwitchAPI insists on an https URL at construction; the hook itself serves plain HTTP here
    hook = EventSubWebhook("https://127.0.0.1", port, twitch, host_binding="127.0.0.1",
                           subscription_url=f"{server.http_url}/helix/")
    hook.callback_url = f"http://127.0.0.1:{port}"
    hook.unsubscribe_on_stop = False
    received: list[StreamOnlineEvent] = []
    await asyncio.to_thread(hook.start)
    try:
        async def on_online(event: StreamOnlineEvent) -> None:
            received.append(event)

        sub_id = await hook.listen_stream_online(alice["user_id"], on_online)  # waits for our challenge
        # pyTwitchAPI returns once it has answered the challenge; Livecast enables the
        # subscription when the answer arrives, and events before that are not sent (as on Twitch).
        async def enabled() -> bool:
            async with server.platform.db.session() as db:
                return (await db.get(EventSubSubscription, sub_id)).status == "enabled"  # type: ignore[union-attr]

        await wait_for(enabled, timeout=10)
        await publish_event(server.platform.bus, "stream.online", online_event(alice))
        await wait_for(lambda: received, timeout=10)
        assert received[0].subscription.id == sub_id
        headers, body = next((h, b) for h, b in sent if h["twitch-eventsub-message-type"] == "notification")
        headers = {k: v for k, v in headers.items() if k.lower().startswith("twitch-") or k == "content-type"}
        async with aiohttp.ClientSession() as session:
            tampered = body.replace(b'"live"', b'"LIVE"')
            assert tampered != body
            async with session.post(hook.callback_url + "/callback", data=tampered, headers=headers) as r:
                assert r.status == 403
            async with session.post(hook.callback_url + "/callback", data=body, headers=headers) as r:
                assert r.status == 200  # the genuine message still verifies (deduplicated by id)
        assert len(received) == 1
    finally:
        # EventSubWebhook.stop() shuts its runner down from the caller's loop, which only works
        # when the caller owns that loop; ending the hook thread's keep-alive is enough here.
        hook._closing = True
        await twitch.close()
        await server.runner.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _node(script: str, env: dict[str, str], on_line: Any) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "tests" / "js" / script), cwd=str(ROOT), env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            async for raw in proc.stdout:
                line = raw.decode().rstrip()
                lines.append(line)
                await on_line(line)
            return await proc.wait(), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_twurple_api_and_eventsub_ws(server: Server) -> None:
    alice = await server.create_user("alice")
    bob = await server.create_user("bob")
    await add_stream(server, bob["user_id"], viewers=3, title="bob on twurple")
    client_id, _secret, _app, tokens = await app_with_tokens(server, [alice["user_id"]])
    env = {"TWURPLE_MOCK_API_PORT": str(server.platform.ports["http"]), "LIVECAST_CLIENT_ID": client_id,
           "LIVECAST_TOKEN": tokens[alice["user_id"]][0], "LIVECAST_USER": alice["user_id"]}

    async def on_line(line: str) -> None:
        if line == "SUBSCRIBED":
            await publish_event(server.platform.bus, "stream.online", online_event(alice))

    code, lines = await _node("twurple_api.mjs", env, on_line)
    assert code == 0, "\n".join(lines)
    results = {k: json.loads(v) for k, _, v in (line.partition(" ") for line in lines) if k.isupper() and v}
    assert sorted(results["USERS"]) == ["alice", "bob"]
    assert results["STREAMS"] == [["bob", 3, "bob on twurple"]]
    assert results["CHANNEL"] == "twurple title"
    assert results["ONLINE"] == {"login": "alice", "type": "live"}


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Any:
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)


async def test_pytwitchapi_receives_stream_online_from_ffmpeg(server: Server) -> None:
    """The whole path: ffmpeg publishes over RTMP, ingest emits stream.online, EventSub delivers it."""
    alice = await server.create_user("alice")
    twitch, _ = await pytwitch(server, alice)
    received: list[StreamOnlineEvent] = []
    eventsub = EventSubWebsocket(twitch, connection_url=f"{server.http_url.replace('http', 'ws')}/ws",
                                 subscription_url=f"{server.http_url}/helix/")
    await asyncio.to_thread(eventsub.start)
    ffmpeg = None
    try:
        async def on_online(event: StreamOnlineEvent) -> None:
            received.append(event)

        await eventsub.listen_stream_online(alice["user_id"], on_online)
        ffmpeg = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
            "testsrc2=size=320x180:rate=30", "-f", "lavfi", "-i", "sine", "-t", "4", "-c:v", "libx264",
            "-preset", "ultrafast", "-g", "30", "-c:a", "aac", "-f", "flv",
            f"rtmp://127.0.0.1:{server.rtmp_port}/app/{alice['stream_key']}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_for(lambda: received, timeout=20)
        assert received[0].event.broadcaster_user_id == alice["user_id"]
        assert received[0].event.type == "live"
        streams = [s async for s in twitch.get_streams(user_id=[alice["user_id"]])]
        assert [s.user_login for s in streams] == ["alice"]
    finally:
        if ffmpeg is not None and ffmpeg.returncode is None:
            ffmpeg.kill()
            await ffmpeg.wait()
        await eventsub.stop()
        await twitch.close()
