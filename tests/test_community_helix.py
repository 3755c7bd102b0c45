"""Channel points, predictions and polls end to end: pyTwitchAPI over Helix, EventSub over
WebSocket, and the viewer's side through the web app's endpoints, against a running Livecast."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from twitchAPI.eventsub.websocket import EventSubWebsocket
from twitchAPI.object.eventsub import (
    ChannelPointsCustomRewardRedemptionAddEvent,
    ChannelPointsCustomRewardRedemptionUpdateEvent,
    ChannelPollBeginEvent,
    ChannelPollEndEvent,
    ChannelPollProgressEvent,
    ChannelPredictionEndEvent,
    ChannelPredictionEvent,
)
from twitchAPI.twitch import Twitch
from twitchAPI.type import (
    AuthScope,
    CustomRewardRedemptionStatus,
    PollStatus,
    PredictionStatus,
    TwitchAPIException,
    TwitchAuthorizationException,
)

from livecast.chat import service as chat
from livecast.community import points
from tests.conftest import Server, wait_for
from tests.helix_support import add_stream, app_with_tokens, headers
from tests.test_web_pages import signed_in

SCOPES = [AuthScope.CHANNEL_MANAGE_REDEMPTIONS, AuthScope.CHANNEL_READ_REDEMPTIONS,
          AuthScope.CHANNEL_MANAGE_PREDICTIONS, AuthScope.CHANNEL_READ_PREDICTIONS,
          AuthScope.CHANNEL_MANAGE_POLLS, AuthScope.CHANNEL_READ_POLLS]


async def pytwitch(server: Server, user: dict[str, Any]) -> tuple[Twitch, str, str]:
    client_id, secret, _app, tokens = await app_with_tokens(server, [user["user_id"]])
    twitch = await Twitch(client_id, secret, base_url=f"{server.http_url}/helix/",
                          auth_base_url=f"{server.http_url}/oauth2/")
    access, refresh = tokens[user["user_id"]]
    await twitch.set_user_authentication(access, SCOPES, refresh)
    return twitch, client_id, access


class Viewer:
    """A signed-in browser on the channel page, using the widgets' endpoints."""

    def __init__(self, server: Server, cookie: str, csrf: str, channel: str) -> None:
        self.http = httpx.AsyncClient(base_url=server.http_url, cookies={"livecast_session": cookie}, timeout=10)
        self.csrf = csrf
        self.channel = channel

    async def post(self, action: str, **body: Any) -> httpx.Response:
        return await self.http.post(f"/api/community/{self.channel}/{action}", json=body,
                                    headers={"X-CSRF-Token": self.csrf})

    async def state(self) -> dict[str, Any]:
        response = await self.http.get(f"/api/community/{self.channel}")
        assert response.status_code == 200
        doc: dict[str, Any] = response.json()
        return doc


async def test_rewards_predictions_polls_through_helix_and_eventsub(server: Server) -> None:
    from livecast.web.session import COOKIE

    streamer = await server.create_user("streamer", partner=True)
    fan = await server.create_user("fan")
    cid = streamer["user_id"]
    await add_stream(server, cid, viewers=1)
    twitch, _client_id, _access = await pytwitch(server, streamer)
    cookie, csrf = await signed_in(server, fan["user_id"])
    viewer = Viewer(server, cookie, csrf, "streamer")
    viewer.http.cookies.set(COOKIE, cookie)
    got: dict[str, list[Any]] = {}

    def recorder(name: str) -> Any:
        async def record(event: Any) -> None:
            got.setdefault(name, []).append(event)
        return record

    eventsub = EventSubWebsocket(twitch, connection_url=f"{server.http_url.replace('http', 'ws')}/ws",
                                 subscription_url=f"{server.http_url}/helix/")
    await asyncio.to_thread(eventsub.start)
    try:
        await eventsub.listen_channel_points_custom_reward_redemption_add(cid, recorder("add"))
        await eventsub.listen_channel_points_custom_reward_redemption_update(cid, recorder("update"))
        for stage in ("begin", "progress", "lock", "end"):
            await getattr(eventsub, f"listen_channel_prediction_{stage}")(cid, recorder(f"prediction.{stage}"))
        for stage in ("begin", "progress", "end"):
            await getattr(eventsub, f"listen_channel_poll_{stage}")(cid, recorder(f"poll.{stage}"))

        # Earning by watching: a playback token and a heartbeat, credited by the worker.
        token = (await viewer.http.post("/api/playback/streamer/token")).json()["token"]
        assert (await viewer.http.post("/api/heartbeat", json={"token": token})).status_code == 200
        await wait_for(lambda: _balance(viewer, points.WATCH_POINTS_PER_MINUTE), timeout=10)
        async with server.platform.db.session() as db:
            await points.credit(db, cid, fan["user_id"], 998, "grant")

        # Custom reward, redemption from the channel page, refund through Helix.
        reward = await twitch.create_custom_reward(cid, "Song request", 100, prompt="Which song?",
                                                   is_user_input_required=True)
        assert reward.cost == 100 and reward.is_user_input_required and reward.is_in_stock
        assert [r.id for r in await twitch.get_custom_reward(cid, only_manageable_rewards=True)] == [reward.id]
        refused = await viewer.post("redeem", reward_id=reward.id, user_input="")
        assert refused.status_code == 400 and refused.json()["error"] == "input_required"
        room = await server.platform.bus.subscribe(chat.room_topic("streamer"))
        redeemed = await viewer.post("redeem", reward_id=reward.id, user_input="Never gonna give you up")
        assert redeemed.status_code == 200 and redeemed.json()["balance"] == 900
        # The reward's message is also a chat line, tagged for bots as on Twitch.
        _, line = await asyncio.wait_for(anext(aiter(room)), 10)
        await room.close()
        assert f"custom-reward-id={reward.id}".encode() in line
        assert line.rstrip().endswith(b"PRIVMSG #streamer :Never gonna give you up")
        await wait_for(lambda: _balance(viewer, 900 + points.CHAT_POINTS), timeout=10)  # chatting earns too
        await wait_for(lambda: got.get("add"), timeout=10)
        add: ChannelPointsCustomRewardRedemptionAddEvent = got["add"][0]
        assert add.event.user_login == "fan" and add.event.user_input == "Never gonna give you up"
        assert add.event.status == "unfulfilled" and add.event.reward.cost == 100
        queued = [r async for r in twitch.get_custom_reward_redemption(
            cid, reward.id, status=CustomRewardRedemptionStatus.UNFULFILLED)]
        assert [r.id for r in queued] == [add.event.id]
        await twitch.update_redemption_status(cid, reward.id, [add.event.id], CustomRewardRedemptionStatus.CANCELED)
        await wait_for(lambda: got.get("update"), timeout=10)
        update: ChannelPointsCustomRewardRedemptionUpdateEvent = got["update"][0]
        assert update.event.status == "canceled"
        assert (await viewer.state())["balance"] == 1005

        # Prediction: bet from the page, lock and resolve through Helix.
        pred = await twitch.create_prediction(cid, "Will we win?", ["Yes", "No"], 120)
        yes, no = pred.outcomes
        assert (yes.color, no.color) == ("BLUE", "PINK")
        bet = await viewer.post("bet", prediction_id=pred.id, outcome_id=yes.id, points=300)
        assert bet.status_code == 200 and bet.json()["balance"] == 705
        await wait_for(lambda: got.get("prediction.progress"), timeout=10)
        progress: ChannelPredictionEvent = got["prediction.progress"][-1]
        assert progress.event.outcomes[0].channel_points == 300 and progress.event.outcomes[0].users == 1
        await twitch.end_prediction(cid, pred.id, PredictionStatus.LOCKED)
        late = await viewer.post("bet", prediction_id=pred.id, outcome_id=yes.id, points=1)
        assert late.status_code == 409
        ended = await twitch.end_prediction(cid, pred.id, PredictionStatus.RESOLVED, yes.id)
        assert ended.status == PredictionStatus.RESOLVED and ended.winning_outcome_id == yes.id
        await wait_for(lambda: got.get("prediction.end") and got.get("prediction.lock"), timeout=10)
        end: ChannelPredictionEndEvent = got["prediction.end"][0]
        assert end.event.status == "resolved" and end.event.winning_outcome_id == yes.id
        assert end.event.outcomes[0].top_predictors[0].channel_points_won == 300  # sole bettor: stake back
        assert [p.id async for p in twitch.get_predictions(cid)] == [pred.id]
        assert (await viewer.state())["balance"] == 1005

        # Poll with channel-points voting.
        poll = await twitch.create_poll(cid, "Next map?", ["Dust", "Nuke"], 60, channel_points_voting_enabled=True,
                                        channel_points_per_vote=50)
        voted = await viewer.post("vote", poll_id=poll.id, choice_id=poll.choices[1].id, votes=3)
        assert voted.status_code == 200 and voted.json()["balance"] == 905  # one free, two for 50 each
        await wait_for(lambda: got.get("poll.progress"), timeout=10)
        poll_progress: ChannelPollProgressEvent = got["poll.progress"][-1]
        assert poll_progress.event.choices[1].votes == 3
        assert poll_progress.event.choices[1].channel_points_votes == 2
        done = await twitch.end_poll(cid, poll.id, PollStatus.TERMINATED)
        assert done.status == PollStatus.TERMINATED
        await wait_for(lambda: got.get("poll.end"), timeout=10)
        poll_end: ChannelPollEndEvent = got["poll.end"][0]
        begin: ChannelPollBeginEvent = got["poll.begin"][0]
        assert poll_end.event.status == "terminated" and begin.event.channel_points_voting.amount_per_vote == 50
        listed = [p async for p in twitch.get_polls(cid)]
        assert [(p.id, p.choices[1].votes) for p in listed] == [(poll.id, 3)]
    finally:
        await eventsub.stop()
        await twitch.close()
        await viewer.http.aclose()


async def _redeem(server: Server, channel_id: str, reward_id: str, user_id: str) -> None:
    from livecast.community import rewards

    async with server.platform.db.session() as db:
        await points.credit(db, channel_id, user_id, 10, "grant")
    await points.run(server.platform, lambda db, out: rewards.redeem(db, out, channel_id=channel_id,
                                                                     reward_id=reward_id, user_id=user_id))


async def _balance(viewer: Viewer, expected: int) -> bool:
    return bool((await viewer.state())["balance"] == expected)


async def test_helix_refusals(server: Server) -> None:
    streamer = await server.create_user("streamer", partner=True)
    plain = await server.create_user("plain")
    twitch, client_id, access = await pytwitch(server, streamer)
    other_id, _secret, _app, other_tokens = await app_with_tokens(server, [streamer["user_id"]])
    try:
        reward = await twitch.create_custom_reward(streamer["user_id"], "Hydrate", 10)
        try:
            await twitch.create_custom_reward(streamer["user_id"], "Hydrate", 10)
            raise AssertionError("a duplicate title must be refused")
        except TwitchAPIException as exc:
            assert "DUPLICATE" in str(exc)
        try:
            await twitch.create_custom_reward(plain["user_id"], "Nope", 10)
            raise AssertionError("another broadcaster's id must be refused")
        except (TwitchAPIException, TwitchAuthorizationException):
            pass
        async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
            other = headers(other_id, other_tokens[streamer["user_id"]][0])
            base = {"broadcaster_id": streamer["user_id"], "id": reward.id}
            patch = await http.patch("/helix/channel_points/custom_rewards", params=base, json={"cost": 5},
                                     headers=other)
            assert patch.status_code == 403  # only the app that created a reward manages it
            read = await http.get("/helix/channel_points/custom_rewards", params={"broadcaster_id": streamer["user_id"]},
                                  headers=other)
            assert read.status_code == 200 and [r["id"] for r in read.json()["data"]] == [reward.id]
            mine = headers(client_id, access)
            bad = await http.post("/helix/predictions", headers=mine, json={
                "broadcaster_id": streamer["user_id"], "title": "x", "outcomes": [{"title": "only"}],
                "prediction_window": 60})
            assert bad.status_code == 400 and bad.json()["error"] == "Bad Request"
            queue = await http.get("/helix/channel_points/custom_rewards/redemptions", headers=mine,
                                   params={"broadcaster_id": streamer["user_id"], "reward_id": reward.id})
            assert queue.status_code == 400  # status or id is required
            # The queue pages with an opaque cursor, oldest first, then newest first.
            fans = [await server.create_user(f"fan{i}") for i in range(3)]
            for fan in fans:
                await _redeem(server, streamer["user_id"], reward.id, fan["user_id"])
            listing = {"broadcaster_id": streamer["user_id"], "reward_id": reward.id, "status": "UNFULFILLED",
                       "first": "2"}
            page1 = (await http.get("/helix/channel_points/custom_rewards/redemptions", params=listing,
                                    headers=mine)).json()
            page2 = (await http.get("/helix/channel_points/custom_rewards/redemptions", headers=mine,
                                    params={**listing, "after": page1["pagination"]["cursor"]})).json()
            assert [r["user_login"] for r in page1["data"] + page2["data"]] == ["fan0", "fan1", "fan2"]
            assert page2["pagination"] == {}
            newest = (await http.get("/helix/channel_points/custom_rewards/redemptions", headers=mine,
                                     params={**listing, "sort": "NEWEST", "first": "1"})).json()
            assert [r["user_login"] for r in newest["data"]] == ["fan2"]
            gone = await http.delete("/helix/channel_points/custom_rewards", params=base, headers=mine)
            assert gone.status_code == 204
            plain_tokens = await app_with_tokens(server, [plain["user_id"]])
            not_partner = await http.post("/helix/polls", headers=headers(plain_tokens[0], plain_tokens[3][plain["user_id"]][0]),
                                          json={"broadcaster_id": plain["user_id"], "title": "t",
                                                "choices": [{"title": "a"}, {"title": "b"}], "duration": 60})
            assert not_partner.status_code == 403
    finally:
        await twitch.close()


async def test_widget_stream_carries_live_events(server: Server) -> None:
    streamer = await server.create_user("streamer", partner=True)
    cookie, csrf = await signed_in(server, streamer["user_id"])
    from livecast.web.session import COOKIE

    async with httpx.AsyncClient(base_url=server.http_url, cookies={COOKIE: cookie}, timeout=10) as http:
        async with http.stream("GET", "/api/community/streamer/events") as stream:
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            made = await http.post("/api/community/streamer/manage/poll", headers={"X-CSRF-Token": csrf},
                                   json={"title": "Pizza?", "choices": ["yes", "no"], "duration": 30})
            assert made.status_code == 200
            async for line in lines:
                if line.startswith("data: "):
                    doc = json.loads(line[6:])
                    # the public state, rendered once for every open page
                    assert doc["topic"] == "state" and doc["state"]["poll"]["title"] == "Pizza?"
                    break
        queue = await http.get("/api/community/streamer/manage/queue")
        assert queue.status_code == 200 and queue.json()["queue"] == []


async def test_widgets_refuse_an_unknown_channel(server: Server) -> None:
    """The channel page's reads answer a login nobody has with the JSON 404, signed in or not."""
    refusal = {"error": "not_found", "status": 404, "message": "No such channel"}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        for path in ("/api/community/nobody_here", "/api/community/nobody_here/me",
                     "/api/community/nobody_here/events"):
            response = await http.get(path)
            assert response.status_code == 404 and response.json() == refusal, path
