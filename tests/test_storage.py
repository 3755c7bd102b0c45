"""Object storage contract, on the local file backend and a local S3-compatible server (moto)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from livecast.storage import ObjectStore, create_store


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server in its own process, for the whole session."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "livecast-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "livecast-test")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=["file", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "file":
        yield create_store(f"file://{tmp_path}/objects")
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    from livecast.storage.s3 import S3Store

    s3 = create_store(f"s3://livecast-{uuid.uuid4().hex[:8]}/prefix?endpoint={endpoint}")
    assert isinstance(s3, S3Store)
    await s3.ensure_bucket()
    yield s3


async def test_roundtrip_list_delete(store: ObjectStore) -> None:
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


async def test_overwrite_is_whole(store: ObjectStore) -> None:
    await store.put("a/b", b"x" * 100_000)
    await store.put("a/b", b"short")
    assert await store.get("a/b") == b"short"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a\\b"])
async def test_keys_cannot_escape(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        await store.put(key, b"x")
