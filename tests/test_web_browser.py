"""The pages in a real Chromium (Debian's, driven by Playwright): chat panel, player states, dashboard.

Chromium is launched from /usr/bin/chromium (``scripts/setup --test`` installs it); a missing
browser fails these tests rather than skipping them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from livecast.chat import service as chat_service
from livecast.chat.models import Emote
from livecast.chat.state import Chatter
from livecast.identity.models import User
from livecast.ingest.models import Stream
from livecast.subscriptions import service as subscriptions
from livecast.web.session import COOKIE
from tests.conftest import Server, start_server, wait_for
from tests.test_web_pages import go_live, signed_in

CHROMIUM = "/usr/bin/chromium"
# Screenshots for a person to look at (CI keeps them as artifacts; git ignores the folder).
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def context_for(browser: Browser, server: Server, user_id: str | None = None) -> BrowserContext:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    if user_id is not None:
        cookie, _ = await signed_in(server, user_id)
        await ctx.add_cookies([{"name": COOKIE, "value": cookie, "url": server.http_url}])
    return ctx


async def open_channel(ctx: BrowserContext, server: Server, login: str) -> Page:
    page = await ctx.new_page()
    await page.goto(f"{server.http_url}/{login}")
    return page


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def chatter(server: Server, login: str) -> Chatter:
    async with server.platform.db.session() as db:
        user = (await db.execute(User.__table__.select().where(User.login == login))).one()
    return Chatter(user.id, user.login, user.display_name)


async def test_chat_panel_between_two_browsers(server: Server, browser: Browser) -> None:
    host = await server.create_user("hostess")
    guest = await server.create_user("guest_1")
    async with server.platform.db.session() as db:
        db.add(Emote(id="25", code="Kappa"))
    await go_live(server, host["user_id"], title="chatting")
    host_page = await open_channel(await context_for(browser, server, host["user_id"]), server, "hostess")
    guest_page = await open_channel(await context_for(browser, server, guest["user_id"]), server, "hostess")
    anon_page = await open_channel(await context_for(browser, server), server, "hostess")
    for page in (host_page, guest_page):
        await expect(page.locator("#chat-input")).to_be_enabled(timeout=10_000)
    await expect(anon_page.locator("#chat-status")).to_have_text("Watching chat anonymously", timeout=10_000)
    await expect(anon_page.locator("#chat-input")).to_have_count(0)

    await guest_page.fill("#chat-input", "hello there Kappa")
    await guest_page.press("#chat-input", "Enter")
    for page in (host_page, anon_page):
        line = page.locator('.lc-chat-msg[data-login="guest_1"]').last
        await expect(line).to_contain_text("hello there", timeout=10_000)
        emote = line.locator("img.lc-emote")
        await expect(emote).to_have_attribute("alt", "Kappa")
        await expect(emote).to_have_attribute("src", "/emotes/25/1.0.png")
        # the emote image really loads from Livecast
        assert await emote.evaluate("img => img.complete && img.naturalWidth > 0")
    # The sender sees its own line once (no echo from the server), confirmed, not refused.
    own = guest_page.locator('.lc-chat-msg[data-login="guest_1"]')
    await expect(own).to_have_count(1)
    await expect(own).not_to_have_class("lc-chat-refused")

    # /me arrives as an action, in italics and the sender's colour.
    await guest_page.fill("#chat-input", "/me waves")
    await guest_page.press("#chat-input", "Enter")
    action = host_page.locator(".lc-chat-action").last
    await expect(action).to_contain_text("waves", timeout=10_000)
    assert await action.locator(".lc-chat-text").evaluate("n => getComputedStyle(n).fontStyle") == "italic"

    # The broadcaster's badge shows on the broadcaster's own messages at the other end.
    await host_page.fill("#chat-input", "welcome!")
    await host_page.press("#chat-input", "Enter")
    await expect(guest_page.locator('.lc-chat-msg[data-login="hostess"] [data-badge="broadcaster"]')).to_have_count(
        1, timeout=10_000)

    # Replies carry the parent and show it at the other end.
    await host_page.locator('.lc-chat-msg[data-login="guest_1"]').first.hover()
    await host_page.locator('.lc-chat-msg[data-login="guest_1"] .lc-chat-reply-btn').first.click()
    await host_page.fill("#chat-input", "thanks for coming")
    await host_page.press("#chat-input", "Enter")
    reply = guest_page.locator('.lc-chat-msg[data-login="hostess"]').last
    await expect(reply.locator(".lc-chat-replyctx")).to_contain_text("Replying to @guest_1", timeout=10_000)

    # Moderator tools: visible to the broadcaster only.
    first = host_page.locator('.lc-chat-msg[data-login="guest_1"]').first
    await first.hover()
    await expect(first.locator('[data-action="delete"]')).to_be_visible()
    await guest_page.locator('.lc-chat-msg[data-login="hostess"]').first.hover()
    await expect(guest_page.locator('.lc-chat-msg[data-login="hostess"] [data-action="delete"]').first).to_be_hidden()
    await first.locator('[data-action="delete"]').click()
    await expect(anon_page.locator('.lc-chat-msg[data-login="guest_1"]').first).to_have_class(
        "lc-chat-line lc-chat-msg lc-chat-deleted", timeout=10_000)
    await expect(anon_page.locator('.lc-chat-msg[data-login="guest_1"] .lc-chat-text').first).to_have_text(
        "<message deleted>")

    # Room modes show as banners; a refused message shows the server's reason.
    await chat_service.update_settings(server.platform, "hostess", await chatter(server, "hostess"),
                                       slow_seconds=30, emote_only=True)
    modes = guest_page.locator("#chat-modes")
    await expect(modes.locator('[data-mode="slow"]')).to_contain_text("30s", timeout=10_000)
    await expect(modes.locator('[data-mode="emote-only"]')).to_be_visible()
    await guest_page.fill("#chat-input", "not an emote")
    await guest_page.press("#chat-input", "Enter")
    refused = guest_page.locator(".lc-chat-refused").last
    await expect(refused.locator(".lc-chat-refusal")).to_contain_text("Not sent", timeout=10_000)
    await expect(refused.locator(".lc-chat-refusal")).to_have_attribute("data-msg-id", "msg_emoteonly")
    await expect(host_page.locator('.lc-chat-msg[data-login="guest_1"]', has_text="not an emote")).to_have_count(0)

    # Timeout from the panel: the timed-out user's lines are cleared everywhere.
    await chat_service.update_settings(server.platform, "hostess", await chatter(server, "hostess"),
                                       slow_seconds=0, emote_only=False)
    await expect(modes).to_be_hidden(timeout=10_000)
    target = host_page.locator('.lc-chat-msg[data-login="guest_1"]').last
    await target.hover()
    await target.locator('[data-action="timeout"]').click()
    await expect(anon_page.locator(".lc-chat-system", has_text="guest_1 has been timed out for 600 seconds")
                 ).to_have_count(1, timeout=10_000)


async def test_player_states_follow_stream_status(server: Server, browser: Browser) -> None:
    u = await server.create_user("flaky")
    viewer = await server.create_user("watcher")
    ctx = await context_for(browser, server, viewer["user_id"])
    page = await open_channel(ctx, server, "flaky")
    await expect(page.locator("#player-offline")).to_be_visible()
    await expect(page.locator("#player-offline")).to_contain_text("flaky is offline.")
    await expect(page.locator("#player")).to_have_attribute("data-state", "offline")

    # Follow from the page, then unfollow.
    await page.click("#btn-follow")
    await expect(page.locator("#btn-follow")).to_have_text("Following")
    await expect(page.locator("#follower-count")).to_have_text("1 followers")
    await page.click("#btn-follow")
    await expect(page.locator("#btn-follow")).to_have_text("Follow")

    # Subscribe with the sandbox provider (no real one configured): done at once.
    await page.click("#btn-subscribe")
    await expect(page.locator("#btn-subscribe")).to_have_text("★ Subscribed")
    async with server.platform.db.session() as db:
        assert await subscriptions.is_subscriber(db, u["user_id"], viewer["user_id"]) == ("1000", 1)
    await page.reload()
    await expect(page.locator("#btn-subscribe")).to_have_text("★ Subscribed")

    stream_id = await go_live(server, u["user_id"], title="back soon", status="reconnecting")
    await expect(page.locator("#player-reconnecting")).to_be_visible(timeout=10_000)
    await expect(page.locator("#player-reconnecting")).to_contain_text("Reconnecting…")
    await expect(page.locator("#player-offline")).to_be_hidden()
    async with server.platform.db.session() as db:
        row = await db.get(Stream, stream_id)
        assert row is not None
        row.status = "offline"
    await expect(page.locator("#player-offline")).to_be_visible(timeout=10_000)
    await expect(page.locator("#player-reconnecting")).to_be_hidden()


async def test_dashboard_reveals_and_resets_key(server: Server, browser: Browser) -> None:
    me = await server.create_user("dash_user")
    ctx = await context_for(browser, server, me["user_id"])
    page = await ctx.new_page()
    await page.goto(f"{server.http_url}/dashboard")
    key = page.locator("#stream-key")
    await expect(key).to_have_attribute("type", "password")
    await page.click("#btn-reveal-key")
    await expect(key).to_have_attribute("type", "text")
    assert (await key.input_value()).startswith(me["stream_key"][:12])

    dialogs: list[str] = []

    async def accept(dialog: object) -> None:
        dialogs.append(dialog.message)  # type: ignore[attr-defined]
        await dialog.accept()  # type: ignore[attr-defined]

    page.on("dialog", accept)
    await page.check("#confirm-reset")
    await page.click("#btn-reset-key")
    await expect(page.locator("#dash-notice")).to_contain_text("will not be shown again")
    assert dialogs and "Reset your stream key" in dialogs[0]
    await expect(page.locator("#stream-key")).to_have_attribute("type", "password")
    await page.click("#btn-reveal-key")
    new_key = await page.locator("#stream-key").input_value()
    assert new_key != me["stream_key"] and len(new_key) > 20
    from livecast.identity import service

    async with server.platform.db.session() as db:
        owner = await service.user_for_stream_key(db, new_key)
    assert owner is not None and owner.id == me["user_id"]

    await page.fill("#f-title", "Dashboard title")
    await page.fill("#f-category", "Music")
    await page.click("#btn-save-info")
    await expect(page.locator("#dash-notice")).to_have_text("Stream info saved.")
    await expect(page.locator("#f-title")).to_have_value("Dashboard title")


FFMPEG_SOURCE = [
    "ffmpeg", "-nostdin", "-loglevel", "error", "-re",
    "-f", "lavfi", "-i", "testsrc2=size=426x240:rate=30",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p",
    "-c:a", "aac", "-b:a", "64k", "-f", "flv",
]


async def publish(server: Server, stream_key: str) -> asyncio.subprocess.Process:
    """A real publisher: ffmpeg pushing a synthetic picture and tone over RTMP, as OBS would."""
    return await asyncio.create_subprocess_exec(
        *FFMPEG_SOURCE, f"rtmp://127.0.0.1:{server.rtmp_port}/app/{stream_key}", stdin=asyncio.subprocess.DEVNULL)


async def stream_status(server: Server, user_id: str) -> str:
    async with server.platform.db.session() as db:
        row = (await db.execute(
            Stream.__table__.select().where(Stream.user_id == user_id).order_by(Stream.started_at.desc()).limit(1)
        )).first()
    return str(row.status) if row is not None else "none"


@pytest.fixture
async def patient_server(tmp_path: Path) -> AsyncIterator[Server]:
    """A reconnect window long enough to see a publisher drop and come back in the browser."""
    srv = await start_server(tmp_path, reconnect_window=12)
    try:
        yield srv
    finally:
        await srv.runner.stop()


async def test_live_stream_plays_then_reconnects_then_ends(patient_server: Server, browser: Browser) -> None:
    server = patient_server
    streamer = await server.create_user("broadcaster1")
    ffmpeg = await publish(server, streamer["stream_key"])
    try:
        async def live() -> bool:
            return await stream_status(server, streamer["user_id"]) == "live"

        await wait_for(live, timeout=20)
        ctx = await context_for(browser, server)
        page = await ctx.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        heartbeats: list[Any] = []
        page.on("response", lambda r: heartbeats.append(r) if r.url.endswith("/api/heartbeat") else None)
        await page.goto(f"{server.http_url}/broadcaster1")
        await expect(page.locator("#player")).to_have_attribute("data-state", "playing", timeout=40_000)
        video = page.locator("#video")
        start = await wait_for_position(video, above=0.5)
        await page.wait_for_timeout(2500)
        later = await video.evaluate("v => v.currentTime")
        assert later > start + 1.0, (start, later, console)
        assert await video.evaluate("v => v.videoWidth") == 426, console
        # Quality menu: Auto plus every video rendition of the master playlist.
        options = await page.locator("#quality option").all_text_contents()
        assert options[0].startswith("Auto")
        levels = await page.evaluate("window.livecast.player.hls.levels.length")
        assert len(options) == levels + 1 and levels >= 1
        assert any(o.startswith("Source (240p)") for o in options), (options, console)
        # The playing viewer is counted through discovery's heartbeat.
        await wait_for(lambda: heartbeats, timeout=10)
        assert heartbeats[0].status == 200 and (await heartbeats[0].json())["counted"] is True
        await expect(page.locator("#latency")).to_have_text(re.compile(r"Latency: \d+\.\d s"), timeout=10_000)
        assert await page.evaluate("window.livecast.player.hls.config.lowLatencyMode") is True
        latency = float((await page.locator("#latency").inner_text()).split()[1])
        assert latency < 5.0, latency  # LL-HLS: a few parts behind live, not segments
        await shot(page, "channel")
        # Picking a rendition by hand switches hls.js to it.
        await page.select_option("#quality", "0")
        assert await page.evaluate("window.livecast.player.hls.currentLevel") == 0
        # Nothing came from anywhere but this Livecast.
        hosts = await page.evaluate("performance.getEntriesByType('resource').map(e => new URL(e.name).host)")
        assert set(hosts) <= {server.http_url.removeprefix("http://")}, hosts

        # The creator's dashboard shows the health ingest measured from the real encoder.
        owner = await context_for(browser, server, streamer["user_id"])
        dash = await owner.new_page()
        await dash.goto(f"{server.http_url}/dashboard")
        await expect(dash.locator('[data-key="resolution"] dd')).to_have_text("426x240")
        await expect(dash.locator('[data-key="video_codec"] dd')).to_contain_text("avc1")
        await expect(dash.locator('[data-key="transcoding"]')).to_be_visible()
        fps = float((await dash.locator('[data-key="fps"] dd').inner_text()).split()[0])
        assert 20 <= fps <= 40, fps
        await shot(dash, "dashboard")
        # ... and the home page's card shows the live thumbnail the origin cut from the stream.
        await dash.goto(f"{server.http_url}/")
        thumb = dash.locator('.lc-card[data-login="broadcaster1"] .lc-thumb img')
        await expect(thumb).to_have_attribute("src", "/hls/broadcaster1/thumbnail-440x248.jpg")
        await wait_for(lambda: thumb.evaluate("img => img.complete && img.naturalWidth === 440"), timeout=15)
        await shot(dash, "home")
        # The Clip button on the live channel: the last 30 s, then the clip's own page.
        await dash.goto(f"{server.http_url}/broadcaster1")
        await dash.locator("#btn-clip").click()
        await dash.wait_for_url(re.compile(r"/broadcaster1/clip/[A-Za-z0-9_-]+"))
        await expect(dash.locator("body")).to_contain_text("being made")
        await dash.close()

        # The publisher drops: "Reconnecting…" inside the window; it comes back, and the same
        # player goes on playing without a reload.
        reconnecting = page.locator("#player-reconnecting")
        ffmpeg.kill()
        await ffmpeg.wait()
        await expect(reconnecting).to_be_visible(timeout=15_000)
        ffmpeg = await publish(server, streamer["stream_key"])
        await expect(reconnecting).to_be_hidden(timeout=20_000)
        await expect(page.locator("#player")).to_have_attribute("data-state", "playing", timeout=30_000)
        before = float(await video.evaluate("v => v.currentTime"))
        await wait_for_position(video, above=before + 1.0)
        # It drops again and stays away: offline once the window closes.
        ffmpeg.kill()
        await ffmpeg.wait()
        await expect(reconnecting).to_be_visible(timeout=15_000)
        await expect(page.locator("#player-offline")).to_be_visible(timeout=30_000)
        await expect(reconnecting).to_be_hidden()
        assert await stream_status(server, streamer["user_id"]) == "offline"
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
        await ffmpeg.wait()


async def wait_for_position(video: Any, above: float, timeout: float = 30.0) -> float:
    async def position() -> float | None:
        now = float(await video.evaluate("v => v.currentTime"))
        return now if now > above else None

    result: float = await wait_for(position, timeout=timeout, interval=0.25)
    return result


async def test_sign_up_sign_out_sign_in_through_the_pages(server: Server, browser: Browser) -> None:
    ctx = await context_for(browser, server)
    page = await ctx.new_page()
    await page.goto(f"{server.http_url}/")
    await page.click("#site-signup")
    await page.fill("#signup-login", "newbie_42")
    await page.fill("#signup-email", "newbie@example.org")
    await page.fill("#signup-password", "a long enough password")
    await page.click("#signup button[type=submit]")
    await expect(page.locator("#site-user")).to_have_text("newbie_42")

    # Signed in: the dashboard opens, and the channel page offers it instead of Follow.
    await page.goto(f"{server.http_url}/dashboard")
    await expect(page.locator("h1")).to_have_text("Creator dashboard")
    await page.goto(f"{server.http_url}/newbie_42")
    await expect(page.get_by_role("link", name="Creator dashboard")).to_be_visible()
    await expect(page.locator("#chat-input")).to_be_enabled(timeout=10_000)

    await page.click(".site-logout button")
    await expect(page.locator("#site-login")).to_be_visible()
    await page.goto(f"{server.http_url}/dashboard")
    assert "/login" in page.url  # the dashboard sends a signed-out visitor to sign in ...
    await page.fill("#login-name", "newbie_42")
    await page.fill("#login-password", "wrong password!")
    await page.click("#login button[type=submit]")
    await expect(page.locator("#form-errors")).to_be_visible()
    await page.fill("#login-password", "a long enough password")
    await page.click("#login button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Creator dashboard")  # ... and back after
    assert page.url.endswith("/dashboard")


async def test_raid_takes_viewers_to_the_target(server: Server, browser: Browser) -> None:
    import httpx

    from tests.helix_support import headers

    raider = await server.create_user("raider")
    target = await server.create_user("raidtarget")
    ctx = await context_for(browser, server)
    page = await open_channel(ctx, server, "raider")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        r = await http.post("/helix/raids", headers=headers(raider["client_id"], raider["token"]),
                            params={"from_broadcaster_id": raider["user_id"], "to_broadcaster_id": target["user_id"]})
        assert r.status_code == 200, r.text
        # the status poll carries the countdown the page shows as a banner
        status = (await http.get("/web/api/channel/raider/status")).json()
        assert status["raid"]["to_login"] == "raidtarget" and status["raid"]["in_seconds"] > 0
    await page.wait_for_url(re.compile(r"/raidtarget\?referrer=raid$"), timeout=25_000)
    await expect(page.locator("#channel-page")).to_be_visible()
    # someone who opens the raider's page after the raid stays there
    late = await open_channel(ctx, server, "raider")
    await late.wait_for_timeout(4000)  # past the first status poll
    assert late.url.endswith("/raider")
    await ctx.close()


async def test_go_live_notification_badge(server: Server, browser: Browser) -> None:
    from livecast.discovery import notifications
    from livecast.discovery.follows import follow

    star = await server.create_user("nightowl")
    fan = await server.create_user("earlybird")
    async with server.platform.db.session() as db:
        await follow(db, fan["user_id"], star["user_id"])
    stream_id = await go_live(server, star["user_id"], title="<b>late</b> show")
    assert await notifications.fan_out(server.platform.db.session, star["user_id"], stream_id) == 1
    ctx = await context_for(browser, server, fan["user_id"])
    page = await ctx.new_page()
    await page.goto(f"{server.http_url}/")
    await expect(page.locator("#notif-count")).to_have_text("1")
    await page.click("#notif-bell")
    link = page.locator("#notif-list a")
    await expect(link).to_have_text("nightowl went live")
    assert (await link.get_attribute("href")) == "/nightowl"
    await expect(page.locator("#notif-count")).to_be_hidden()  # opening the panel marks it read
    await page.reload()
    await expect(page.locator("#notif-list a")).to_have_count(1)
    await expect(page.locator("#notif-count")).to_be_hidden()
    await ctx.close()
