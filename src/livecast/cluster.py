"""A whole multi-node Livecast on loopback, from the project's own files (``scripts/cluster``).

It starts, as separate processes sharing PostgreSQL, Redis and object storage: two ingest
nodes, two chat processes sharing one IRC port (SO_REUSEPORT), an API node, a worker, and two
nginx edges in front of them. It exists so that operators can see the scale-out layout work
before they spread it over machines, and so that the tests can prove it does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
EDGE_TEMPLATE = ROOT / "deploy" / "nginx" / "edge.conf"


@dataclass
class Node:
    name: str
    roles: str
    http_port: int
    rtmp_port: int = 0
    irc_port: int = 0
    pid: int = 0


@dataclass
class Edge:
    name: str
    port: int
    pid: int = 0


@dataclass
class ClusterState:
    base_port: int
    database_url: str
    bus_url: str
    storage_url: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def plan(base: int, database_url: str, bus_url: str, storage_url: str) -> ClusterState:
    irc = base + 667
    return ClusterState(
        base_port=base,
        database_url=database_url,
        bus_url=bus_url,
        storage_url=storage_url,
        nodes=[
            Node("ingest-1", "ingest", base + 1, rtmp_port=base + 935),
            Node("ingest-2", "ingest", base + 2, rtmp_port=base + 936),
            Node("chat-1", "chat", base + 11, irc_port=irc),
            Node("chat-2", "chat", base + 12, irc_port=irc),
            Node("api-1", "api,web", base + 21),
            Node("worker-1", "worker", base + 31),
        ],
        edges=[Edge("edge-1", base + 81), Edge("edge-2", base + 82)],
    )


def _say(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


def _node_env(state: ClusterState, node: Node, run_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(
        LIVECAST_DATA_DIR=str(run_dir / node.name),
        LIVECAST_DATABASE_URL=state.database_url,
        LIVECAST_BUS_URL=state.bus_url,
        LIVECAST_STORAGE_URL=state.storage_url,
        LIVECAST_ROLES=node.roles,
        LIVECAST_HTTP_PORT=str(node.http_port),
        LIVECAST_RTMP_PORT=str(node.rtmp_port or 0),
        LIVECAST_IRC_PORT=str(node.irc_port or 0),
        LIVECAST_PUBLIC_URL=f"http://127.0.0.1:{node.http_port}",
        LIVECAST_NODE_NAME=node.name,
    )
    return env


async def _ensure_database(url: str) -> None:
    import asyncpg

    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(base + "/postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def start_node(state: ClusterState, node: Node, run_dir: Path) -> None:
    (run_dir / node.name).mkdir(parents=True, exist_ok=True)
    log = open(run_dir / f"{node.name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "livecast", "serve"], env=_node_env(state, node, run_dir),
        stdout=log, stderr=log, start_new_session=True,
    )
    node.pid = proc.pid


def render_edge(state: ClusterState, edge: Edge, run_dir: Path) -> Path:
    edge_dir = run_dir / edge.name
    (edge_dir / "cache").mkdir(parents=True, exist_ok=True)
    origins = "\n".join(
        f"        server 127.0.0.1:{n.http_port} max_fails=2 fail_timeout=2s;"
        for n in state.nodes if "ingest" in n.roles
    )
    conf = (
        EDGE_TEMPLATE.read_text()
        .replace("@WORKERS@", "1")
        .replace("@RUN_DIR@", str(edge_dir))
        .replace("@CACHE_DIR@", str(edge_dir / "cache"))
        .replace("@LISTEN@", f"127.0.0.1:{edge.port}")
        .replace("@ORIGINS@", origins)
    )
    path = edge_dir / "nginx.conf"
    path.write_text(conf)
    return path


def start_edge(state: ClusterState, edge: Edge, run_dir: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = render_edge(state, edge, run_dir)
    proc = subprocess.Popen([nginx, "-c", str(conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=open(run_dir / f"{edge.name}.log", "ab"),
                            start_new_session=True)
    edge.pid = proc.pid


def wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.3)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f}s ({last})")


def up(run_dir: Path, base: int, database_url: str, bus_url: str, storage_url: str) -> ClusterState:
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "cluster.json").exists():
        down(run_dir)
    asyncio.run(_ensure_database(database_url))
    state = plan(base, database_url, bus_url, storage_url)
    # Migrations once, before the nodes start, so they do not race each other.
    env = _node_env(state, state.nodes[0], run_dir)
    subprocess.run([sys.executable, "-m", "livecast", "db", "upgrade"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    for node in state.nodes:
        _say(f"starting {node.name} (roles {node.roles}) on http {node.http_port}"
             + (f", rtmp {node.rtmp_port}" if node.rtmp_port else "")
             + (f", irc {node.irc_port}" if node.irc_port else ""))
        start_node(state, node, run_dir)
    _save(run_dir, state)
    for node in state.nodes:
        wait_healthy(f"http://127.0.0.1:{node.http_port}/healthz")
    for edge in state.edges:
        _say(f"starting {edge.name} (nginx) on http {edge.port}")
        start_edge(state, edge, run_dir)
    _save(run_dir, state)
    for edge in state.edges:
        wait_healthy(f"http://127.0.0.1:{edge.port}/edge-healthz")
    _say("cluster is up: " + ", ".join(f"{e.name} http://127.0.0.1:{e.port}" for e in state.edges))
    return state


def _save(run_dir: Path, state: ClusterState) -> None:
    (run_dir / "cluster.json").write_text(json.dumps(asdict(state), indent=2) + "\n")


def load(run_dir: Path) -> ClusterState:
    doc = json.loads((run_dir / "cluster.json").read_text())
    return ClusterState(
        base_port=doc["base_port"], database_url=doc["database_url"], bus_url=doc["bus_url"],
        storage_url=doc["storage_url"], nodes=[Node(**n) for n in doc["nodes"]],
        edges=[Edge(**e) for e in doc["edges"]],
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_pid(pid: int, timeout: float = 15) -> None:
    if pid <= 0 or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not _alive(pid):
                return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def down(run_dir: Path) -> None:
    path = run_dir / "cluster.json"
    if not path.exists():
        _say("no cluster running here")
        return
    state = load(run_dir)
    for edge in state.edges:
        stop_pid(edge.pid)
    for node in reversed(state.nodes):
        _say(f"stopping {node.name}")
        stop_pid(node.pid)
    path.unlink()
    _say("cluster is down")


def status(run_dir: Path) -> int:
    if not (run_dir / "cluster.json").exists():
        _say("no cluster running here")
        return 1
    state = load(run_dir)
    for node in state.nodes:
        print(f"{node.name:<10} pid {node.pid:<8} {'up' if _alive(node.pid) else 'DOWN':<5} "
              f"roles={node.roles} http={node.http_port} rtmp={node.rtmp_port or '-'} irc={node.irc_port or '-'}")
    for edge in state.edges:
        print(f"{edge.name:<10} pid {edge.pid:<8} {'up' if _alive(edge.pid) else 'DOWN':<5} http={edge.port}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--dir", default=str(ROOT / "var" / "cluster"), help="run directory (logs, pids, data)")
    p.add_argument("--base-port", type=int, default=18000, help="ports are allocated from here")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/livecast_cluster")
    p.add_argument("--bus-url", default="redis://127.0.0.1:6379/2")
    p.add_argument("--storage-url", default="", help="default: file:// under --dir (shared by the nodes)")
    args = p.parse_args(argv)
    run_dir = Path(args.dir).resolve()
    if args.action == "up":
        storage = args.storage_url or f"file://{run_dir / 'objects'}"
        up(run_dir, args.base_port, args.database_url, args.bus_url, storage)
        return 0
    if args.action == "down":
        down(run_dir)
        return 0
    return status(run_dir)


if __name__ == "__main__":
    raise SystemExit(main())
