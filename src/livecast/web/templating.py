"""One Jinja2 environment for every HTML page, and :func:`render`, which every page uses.

The layout (``base.html``) shows who is signed in and carries the CSRF token for the sign-out
form, so :func:`render` looks both up itself: a page that forgot to pass them would otherwise
show a logged-out header to a signed-in user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from livecast.web.session import csrf_token, current_user

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "xml"], default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


async def render(request: Request, name: str, *, status_code: int = 200,
                 headers: dict[str, str] | None = None, **ctx: Any) -> HTMLResponse:
    """Render ``name`` with ``current_user``, ``csrf_token`` and ``request`` added to ``ctx``."""
    user = await current_user(request)
    ctx.setdefault("current_user", user)
    ctx.setdefault("csrf_token", await csrf_token(request) if user is not None else "")
    ctx.setdefault("request", request)
    html = environment.get_template(name).render(**ctx)
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    # Pages show per-user content and CSRF tokens: never let a shared cache keep them.
    response.headers.setdefault("cache-control", "no-store")
    response.headers.setdefault("x-frame-options", "DENY")
    response.headers.setdefault("referrer-policy", "same-origin")
    return response
