"""OBS's RTMP client is librtmp: publish through the system's librtmp (via ctypes) to be sure.

librtmp does its own handshake (with the FP9 digest variant when built with crypto), sends
connect with its own property set, releaseStream/FCPublish/createStream/publish, and writes
FLV tags with type 1/2/3 chunk headers, which ffmpeg's native client does differently.
The library comes with libcurl on Debian (package librtmp1); a missing one fails the test.
"""

from __future__ import annotations

import asyncio
import ctypes
import subprocess
from pathlib import Path

from tests.conftest import Server, wait_for
from tests.test_ingest_e2e import _status, streams_of

FFMPEG = "/usr/bin/ffmpeg"


def librtmp_publish(url: str, flv_data: bytes) -> tuple[int, int, int]:
    """(connect, connect stream, bytes written) as librtmp reports them; blocking."""
    lib = ctypes.CDLL("librtmp.so.1")
    lib.RTMP_Alloc.restype = ctypes.c_void_p
    for name in ("RTMP_Init", "RTMP_EnableWrite", "RTMP_Close", "RTMP_Free"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.RTMP_SetupURL.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.RTMP_Connect.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.RTMP_ConnectStream.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.RTMP_Write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    rtmp = lib.RTMP_Alloc()
    lib.RTMP_Init(rtmp)
    url_buf = ctypes.create_string_buffer(url.encode())  # librtmp keeps pointers into it
    assert lib.RTMP_SetupURL(rtmp, url_buf) == 1
    lib.RTMP_EnableWrite(rtmp)
    written = 0
    try:
        connected = lib.RTMP_Connect(rtmp, None)
        stream = lib.RTMP_ConnectStream(rtmp, 0) if connected else 0
        if stream:
            step = 16 * 1024
            for i in range(0, len(flv_data), step):
                n = lib.RTMP_Write(rtmp, flv_data[i : i + step], len(flv_data[i : i + step]))
                if n <= 0:
                    break
                written += n
        return connected, stream, written
    finally:
        lib.RTMP_Close(rtmp)
        lib.RTMP_Free(rtmp)


async def test_librtmp_publisher_goes_live(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "obs.flv"
    await asyncio.to_thread(
        subprocess.run,
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=426x240:rate=30",
         "-f", "lavfi", "-i", "sine", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
         "-c:a", "aac", "-f", "flv", str(path)],
        check=True, timeout=60,
    )
    data = path.read_bytes()
    user = await server.create_user("obsuser")
    url = f"rtmp://127.0.0.1:{server.rtmp_port}/app/{user['stream_key']}"
    publish = asyncio.create_task(asyncio.to_thread(librtmp_publish, url, data))

    async def measured() -> dict[str, object] | None:
        rows = await streams_of(server, user["user_id"])
        return rows[0].health if rows and rows[0].health.get("keyframe_interval") else None

    health = await wait_for(measured, timeout=20)
    connected, stream, written = await asyncio.wait_for(publish, 30)
    assert (connected, stream) == (1, 1)
    assert written >= len(data) - 16  # librtmp under-counts the last PreviousTagSize
    assert health["resolution"] == "426x240"
    assert health["keyframe_interval"] == 1.0
    assert health["audio_codec"] == "mp4a.40.2"
    await wait_for(lambda: _status(server, user["user_id"], "reconnecting"), timeout=10)

    # A wrong key: librtmp connects, but the stream is refused.
    bad = f"rtmp://127.0.0.1:{server.rtmp_port}/app/live_wrong"
    connected, stream, written = await asyncio.to_thread(librtmp_publish, bad, data)
    assert stream == 0 and written == 0
