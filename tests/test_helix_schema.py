"""schemathesis against the live server: no 500s, and every response matches /helix/openapi.json."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import start_server

ROOT = Path(__file__).resolve().parent.parent


async def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    server = await start_server(tmp_path, helix_rate_limit=1_000_000)
    try:
        user = await server.create_user("alice")
        proc = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "schemathesis"), "run", f"{server.http_url}/helix/openapi.json",
            "--include-path-regex", "^/helix/",
            "-H", f"Client-Id: {user['client_id']}", "-H", f"Authorization: Bearer {user['token']}",
            "--max-examples", "10", "--seed", "7", "--phases", "fuzzing", "--mode", "all", "--request-timeout", "10",
            "--checks", "all",
            # the auth-bypass and "accepts valid data" heuristics cannot know that ids must exist
            "--exclude-checks", "ignored_auth,positive_data_acceptance,missing_required_header",
            "--generation-with-security-parameters", "false",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 110)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        assert " passed" in text
    finally:
        await server.runner.stop()
