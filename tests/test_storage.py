"""Object storage contract on the local file backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from livecast.storage import create_store


async def test_file_store_roundtrip(tmp_path: Path) -> None:
    store = create_store(f"file://{tmp_path}/objects")
    await store.put("vods/1/seg1.m4s", b"abc", "video/mp4")
    await store.put("vods/1/seg2.m4s", b"def")
    await store.put("vods/2/seg1.m4s", b"ghi")
    assert await store.get("vods/1/seg1.m4s") == b"abc"
    assert await store.get("vods/1/missing") is None
    assert await store.list("vods/1/") == ["vods/1/seg1.m4s", "vods/1/seg2.m4s"]
    assert await store.delete_prefix("vods/1/") == 2
    assert await store.list("vods/") == ["vods/2/seg1.m4s"]
    await store.delete("vods/2/seg1.m4s")
    await store.delete("vods/2/seg1.m4s")  # idempotent
    assert await store.list() == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b"])
async def test_keys_cannot_escape(tmp_path: Path, key: str) -> None:
    store = create_store(f"file://{tmp_path}/objects")
    with pytest.raises(ValueError):
        await store.put(key, b"x")
