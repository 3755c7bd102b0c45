"""Response shapes, for the OpenAPI document at ``/helix/openapi.json``.

Handlers build plain dicts (the hot paths serialise 100 streams per request, and a second
validation pass would only cost time); these models describe exactly those dicts, and the
schemathesis test checks every response against them, so they cannot drift silently.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Error(BaseModel):
    error: str
    status: int
    message: str


class Pagination(BaseModel):
    cursor: str | None = None


class Page(BaseModel, Generic[T]):
    data: list[T]
    pagination: Pagination


class CountedPage(BaseModel, Generic[T]):
    data: list[T]
    total: int
    pagination: Pagination


class Data(BaseModel, Generic[T]):
    data: list[T]


class User(BaseModel):
    id: str
    login: str
    display_name: str
    type: str
    broadcaster_type: str
    description: str
    profile_image_url: str
    offline_image_url: str
    view_count: int
    created_at: str
    email: str | None = None


class ChannelInfo(BaseModel):
    broadcaster_id: str
    broadcaster_login: str
    broadcaster_name: str
    broadcaster_language: str
    game_id: str
    game_name: str
    title: str
    delay: int
    tags: list[str]
    content_classification_labels: list[str]
    is_branded_content: bool


class ModifyChannel(BaseModel):
    """The body of ``PATCH /channels``; every field optional, at least one required."""

    model_config = ConfigDict(extra="ignore")

    game_id: str | None = None
    broadcaster_language: str | None = None
    title: str | None = None
    delay: int | None = None
    tags: list[str] | None = None
    content_classification_labels: list[Any] | None = None
    is_branded_content: bool | None = None


class Stream(BaseModel):
    id: str
    user_id: str
    user_login: str
    user_name: str
    game_id: str
    game_name: str
    type: str
    title: str
    tags: list[str]
    viewer_count: int
    started_at: str
    language: str
    thumbnail_url: str
    tag_ids: list[str]
    is_mature: bool


class Game(BaseModel):
    id: str
    name: str
    box_art_url: str
    igdb_id: str


class SearchCategory(BaseModel):
    id: str
    name: str
    box_art_url: str


class SearchChannel(BaseModel):
    broadcaster_language: str
    broadcaster_login: str
    display_name: str
    game_id: str
    game_name: str
    id: str
    is_live: bool
    tag_ids: list[str]
    tags: list[str]
    thumbnail_url: str
    title: str
    started_at: str


class Follower(BaseModel):
    user_id: str
    user_login: str
    user_name: str
    followed_at: str


class Followed(BaseModel):
    broadcaster_id: str
    broadcaster_login: str
    broadcaster_name: str
    followed_at: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Bad request"},
    401: {"model": Error, "description": "Missing or invalid token, or a missing scope"},
    403: {"model": Error, "description": "Not allowed for this user"},
    404: {"model": Error, "description": "Not found"},
    429: {"model": Error, "description": "Rate limit exceeded"},
    503: {"model": Error, "description": "A backend is unavailable"},
}
