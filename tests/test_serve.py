"""``livecast serve`` as an operator runs it: a real process, free ports, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

LIVECAST = [sys.executable, "-m", "livecast"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(LIVECAST_DATA_DIR=str(tmp_path / "var"), LIVECAST_HTTP_PORT="0", LIVECAST_RTMP_PORT="0",
               LIVECAST_IRC_PORT="0")
    env.update(extra)
    return env


def _wait_ports(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> dict[str, int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        time.sleep(0.1)
    raise TimeoutError("no ports.json")


def test_serve_free_ports_health_metrics_and_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([*LIVECAST, "serve"], env=_env(tmp_path), stderr=subprocess.PIPE)
    try:
        ports = _wait_ports(tmp_path / "var" / "ports.json", proc)
        assert ports["http"] > 0
        r = httpx.get(f"http://127.0.0.1:{ports['http']}/healthz")
        assert r.status_code == 200
        assert r.json()["checks"]["database"] == "ok"
        m = httpx.get(f"http://127.0.0.1:{ports['http']}/metrics")
        assert m.status_code == 200
        assert "livecast_http_requests_total" in m.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "listening" in err and f":{ports['http']}" in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run([*LIVECAST, "serve"], env=_env(tmp_path, LIVECAST_HTTP_PORT="x"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "LIVECAST_HTTP_PORT" in r.stderr
    assert "Traceback" not in r.stderr


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = subprocess.run([*LIVECAST, "serve"], env=_env(tmp_path, LIVECAST_HTTP_PORT=str(port)),
                           capture_output=True, text=True, timeout=30)
        # SO_REUSEPORT lets two livecast processes share a port, but not a foreign socket without it.
        assert r.returncode == 1
        assert "cannot start" in r.stderr
    finally:
        s.close()


def test_help_on_every_subcommand() -> None:
    for args in (["--help"], ["serve", "--help"], ["db", "--help"], ["admin", "--help"],
                 ["admin", "create-user", "--help"], ["admin", "issue-token", "--help"], ["bench", "--help"]):
        r = subprocess.run([*LIVECAST, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, args
        assert "usage:" in r.stdout


def test_admin_json_flow(tmp_path: Path) -> None:
    env = _env(tmp_path)
    r = subprocess.run([*LIVECAST, "admin", "create-user", "alice", "--partner", "--json"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"user_id", "login", "stream_key", "token"}
    assert doc["login"] == "alice" and doc["broadcaster_type"] == "partner"
    r = subprocess.run([*LIVECAST, "admin", "create-user", "alice", "--json"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "taken" in json.loads(r.stdout)["error"]
    r = subprocess.run([*LIVECAST, "admin", "create-app", "bot", "--json"], env=env,
                       capture_output=True, text=True, timeout=60)
    app = json.loads(r.stdout)
    assert len(app["client_id"]) == 30 and len(app["client_secret"]) == 30
    r = subprocess.run([*LIVECAST, "admin", "issue-token", "alice", "--scopes", "chat:read chat:edit",
                        "--client-id", app["client_id"], "--json"], env=env, capture_output=True, text=True,
                       timeout=60)
    tok = json.loads(r.stdout)
    assert tok["scope"] == ["chat:read", "chat:edit"]
    r = subprocess.run([*LIVECAST, "admin", "issue-token", "alice", "--scopes", "chat:sing", "--json"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "chat:sing" in r.stdout
    r = subprocess.run([*LIVECAST, "admin", "reset-stream-key", "alice", "--json"], env=env,
                       capture_output=True, text=True, timeout=60)
    new_key = json.loads(r.stdout)["stream_key"]
    assert new_key != doc["stream_key"] and new_key.startswith(f"live_{doc['user_id']}_")
    r = subprocess.run([*LIVECAST, "admin", "stats", "alice", "--days", "7", "--json"], env=env,
                       capture_output=True, text=True, timeout=60)
    stats = json.loads(r.stdout)
    assert r.returncode == 0 and stats["login"] == "alice" and stats["streams"] == []
    r = subprocess.run([*LIVECAST, "admin", "stats", "nobody", "--json"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "nobody" in json.loads(r.stdout)["error"]
