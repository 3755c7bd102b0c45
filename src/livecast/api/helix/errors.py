"""Helix errors: one exception type that every endpoint raises, rendered as Twitch's envelope.

Raising instead of returning keeps handlers linear; the app-wide handler turns it into
``{"error", "status", "message"}`` via :func:`livecast.app.error_response`.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from livecast.app import error_response


class HelixError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def bad_request(message: str) -> HelixError:
    return HelixError(400, message)


def unauthorized(message: str) -> HelixError:
    return HelixError(401, message)


def forbidden(message: str) -> HelixError:
    return HelixError(403, message)


def not_found(message: str) -> HelixError:
    return HelixError(404, message)


async def handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HelixError)
    return error_response(exc.status, exc.message, headers=exc.headers)
