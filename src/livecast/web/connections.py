"""``/settings/connections``: the apps a user has authorized, and disconnecting one.

Disconnecting revokes every token the app holds for the user (access and refresh alike) and,
after the commit, publishes ``user.authorization.revoke`` so the app hears of it through
EventSub, as it would on Twitch. It is the user's side of OAuth: without it, a token given to
a bot could only be revoked by the bot itself.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from livecast.bus import publish_event
from livecast.identity import grants
from livecast.platform import Platform
from livecast.web import templating
from livecast.web.session import check_csrf, csrf_token, current_user

SIGN_IN = "/login?next=/settings/connections"


def install(app: FastAPI, platform: Platform) -> None:
    async def page(request: Request, notice: str = "", error: str = "", status: int = 200) -> Response:
        viewer = await current_user(request)
        if viewer is None:
            return RedirectResponse(SIGN_IN, status_code=303)
        async with platform.db.session() as db:
            apps = await grants.connected_apps(db, viewer.id)
        return await templating.render(
            request, "connections.html", status_code=status, viewer=viewer, apps=apps, notice=notice,
            error=error, page_csrf=await csrf_token(request),
        )

    @app.get("/settings/connections", response_class=HTMLResponse, include_in_schema=False)
    async def connections(request: Request) -> Response:
        return await page(request)

    @app.post("/settings/connections/{client_id}/disconnect", response_class=HTMLResponse, include_in_schema=False)
    async def disconnect(request: Request, client_id: str) -> Response:
        viewer = await current_user(request)
        if viewer is None:
            return RedirectResponse(SIGN_IN, status_code=303)
        form = await request.form()
        if not await check_csrf(request, str(form.get("csrf", ""))):
            return await page(request, error="Your session expired; reload and retry.", status=403)
        async with platform.db.session() as db:
            known = {c.client_id: c for c in await grants.connected_apps(db, viewer.id)}
            app_row = known.get(client_id[:64])
            if app_row is None:
                return await page(request, error="That app is not connected to your account.", status=404)
            await grants.disconnect_app(db, viewer.id, app_row.client_id)
        await publish_event(platform.bus, "user.authorization.revoke", {
            "client_id": app_row.client_id, "user_id": viewer.id, "user_login": viewer.login,
            "user_name": viewer.display_name,
        })
        return await page(request, notice=f"Disconnected {app_row.name}.")
