"""Object storage: ``put/get/delete/list`` of immutable objects by key, chosen by URL.

``file://`` (default, under the data dir) and ``s3://bucket?endpoint=...`` implement the same
interface and run the same tests.
"""

from __future__ import annotations

from typing import Protocol


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    async def list(self, prefix: str = "") -> list[str]: ...

    async def delete_prefix(self, prefix: str) -> int: ...


def check_key(key: str) -> str:
    """Keys are relative, slash-separated paths without ``..``; anything else is a bug or an attack."""
    if not key or key.startswith("/") or "\\" in key or any(p in {"", ".", ".."} for p in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


def create_store(url: str) -> ObjectStore:
    if url.startswith("file://"):
        from livecast.storage.file import FileStore

        return FileStore(url.removeprefix("file://"))
    if url.startswith("s3://"):
        from livecast.storage.s3 import S3Store

        return S3Store(url)
    raise ValueError(f"unsupported storage URL {url!r}")
