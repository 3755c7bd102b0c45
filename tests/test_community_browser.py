"""Channel points, predictions and polls in a real Chromium: the broadcaster drives them from the
dashboard, a viewer uses the channel page's widgets, and each side sees the other's actions
arrive live (server-sent events), without reloading."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from livecast.community import points
from tests.conftest import Server
from tests.test_web_browser import browser, context_for, open_channel  # noqa: F401 (fixture)
from tests.test_web_pages import go_live


async def test_widgets_and_dashboard_controls_update_live(server: Server, browser: Browser) -> None:  # noqa: F811
    streamer = await server.create_user("streamer", partner=True)
    fan = await server.create_user("fan")
    await go_live(server, streamer["user_id"], title="community night")
    async with server.platform.db.session() as db:
        await points.credit(db, streamer["user_id"], fan["user_id"], 1000, "grant")

    owner_ctx = await context_for(browser, server, streamer["user_id"])
    fan_ctx = await context_for(browser, server, fan["user_id"])
    try:
        fan_page = await open_channel(fan_ctx, server, "streamer")
        await expect(fan_page.locator("#cm-balance")).to_have_text("1000 points")
        dash = await owner_ctx.new_page()
        fan_page.on("dialog", lambda dialog: dialog.accept("play my song"))
        await dash.goto(f"{server.http_url}/dashboard")

        # A reward created on the dashboard appears in the viewer's rewards list.
        await dash.fill("#reward-title", "Song request")
        await dash.fill("#reward-cost", "250")
        await dash.check("#reward-input")
        await dash.click("#btn-create-reward")
        await expect(dash.locator("#dash-rewards")).to_contain_text("Song request (250)")
        await fan_page.click("#cm-points-toggle")
        reward = fan_page.locator(".lc-cm-reward", has_text="Song request")
        await expect(reward).to_be_enabled()
        await reward.click()
        # 250 spent; the reward's message went to chat, and chatting earned 5 (the widget hears it live).
        await expect(fan_page.locator("#cm-balance")).to_have_text("755 points")
        queued = dash.locator("#dash-queue li", has_text="play my song")
        await expect(queued).to_be_visible()
        await queued.get_by_role("button", name="Refund").click()
        await expect(fan_page.locator("#cm-balance")).to_have_text("1005 points")
        await expect(dash.locator("#dash-queue")).to_contain_text("Nothing waiting.")

        # A prediction started on the dashboard opens on the channel page; the bet shows up live.
        await dash.fill("#prediction-title", "Do we beat the boss?")
        await dash.fill("#prediction-outcomes", "Yes\nNo")
        await dash.click("#btn-start-prediction")
        widget = fan_page.locator("#cm-prediction")
        await expect(widget).to_contain_text("Do we beat the boss?")
        await expect(widget).to_contain_text("Predictions open")
        yes = widget.locator(".lc-cm-row", has_text="Yes")
        await yes.locator("input").fill("400")
        await yes.get_by_role("button", name="Bet").click()
        await expect(fan_page.locator("#cm-balance")).to_have_text("605 points")
        await expect(dash.locator("#dash-prediction")).to_contain_text("Yes: 400 points, 1 users")
        await dash.get_by_role("button", name="Resolve: Yes").click()
        await expect(widget).to_contain_text("Resolved")
        await expect(widget).to_contain_text("you won 400")
        await expect(fan_page.locator("#cm-balance")).to_have_text("1005 points")

        # A poll: the viewer's free vote is counted on both pages.
        await dash.fill("#poll-title", "Next game?")
        await dash.fill("#poll-choices", "Chess\nGo")
        await dash.click("#btn-start-poll")
        poll = fan_page.locator("#cm-poll")
        await expect(poll).to_contain_text("Next game?")
        await poll.locator(".lc-cm-row", has_text="Go").get_by_role("button", name="Vote").click()
        await expect(poll.locator(".lc-cm-row", has_text="Go")).to_contain_text("1 vote")
        await expect(dash.locator("#dash-poll")).to_contain_text("Go: 1 votes")
        await dash.get_by_role("button", name="End poll").click()
        await expect(poll).to_contain_text("Poll ended")
    finally:
        await owner_ctx.close()
        await fan_ctx.close()
