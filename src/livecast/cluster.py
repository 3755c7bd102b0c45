"""A whole multi-node Livecast on loopback, from the project's own files (``scripts/cluster``).

It starts, as separate processes sharing PostgreSQL, Redis and object storage: two ingest
nodes, two chat processes sharing one IRC port (SO_REUSEPORT, the kernel spreads connections),
an API node, a worker, a web node, and two nginx edges in front of them (deploy/nginx/edge.conf).
It exists so that operators can see the scale-out layout work before they spread it over
machines, and so that the tests (tests/test_cluster.py) and ``bench/edge.py`` can prove it
does. Every process is an ordinary ``livecast serve --role ...``; nothing here is needed in
production, where each node gets the same environment variables from its own service manager.

State (ports, pids, URLs) is written to ``<dir>/cluster.json`` so ``down`` and ``status`` work
from another shell; each node logs to ``<dir>/<node>.log``, each edge to ``<dir>/<edge>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
EDGE_TEMPLATE = ROOT / "deploy" / "nginx" / "edge.conf"

# (name, roles): the full layout; a smaller one for tests on 2 cores (no web node, two API
# nodes to show that Helix rate limits hold across them); one origin and its router for bench/edge.py.
LAYOUTS: dict[str, list[tuple[str, str]]] = {
    "full": [
        ("ingest-1", "ingest"), ("ingest-2", "ingest"), ("chat-1", "chat"), ("chat-2", "chat"),
        ("api-1", "api"), ("worker-1", "worker"), ("web-1", "web"),
    ],
    "small": [("ingest-1", "ingest"), ("ingest-2", "ingest"), ("chat-1", "chat"), ("chat-2", "chat"),
              ("api-1", "api"), ("api-2", "api"), ("worker-1", "worker")],
    "video": [("ingest-1", "ingest"), ("api-1", "api")],  # bench/edge.py: one origin and its router
}


@dataclass
class Node:
    name: str
    roles: str
    http_port: int
    rtmp_port: int = 0
    irc_port: int = 0
    pid: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def has(self, role: str) -> bool:
        return role in self.roles.split(",")


@dataclass
class Edge:
    name: str
    port: int
    pid: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ClusterState:
    run_dir: str
    database_url: str
    bus_url: str
    storage_url: str
    secret_key: str
    registry_ttl: float = 10.0
    env: dict[str, str] = field(default_factory=dict)  # more LIVECAST_* settings for every node
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def edge(self, name: str) -> Edge:
        return next(e for e in self.edges if e.name == name)

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.has(role)]


def free_port() -> int:
    """A port free right now (the kernel's choice); the node binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan(run_dir: Path, base: int, database_url: str, bus_url: str, storage_url: str, *,
         layout: str = "full", edges: int = 2, registry_ttl: float = 10.0,
         env: dict[str, str] | None = None) -> ClusterState:
    """Ports for every process: ``base + offset`` (stable, for humans), or free ones if base is 0."""

    def port(offset: int) -> int:
        return base + offset if base else free_port()

    irc = port(667)  # one IRC port for every chat process: they share it with SO_REUSEPORT
    nodes: list[Node] = []
    ingest = 0
    for i, (name, roles) in enumerate(LAYOUTS[layout]):
        node = Node(name, roles, port(1 + i))
        if node.has("ingest"):
            node.rtmp_port = port(935 + ingest)
            ingest += 1
        if node.has("chat"):
            node.irc_port = irc
        nodes.append(node)
    return ClusterState(
        run_dir=str(run_dir), database_url=database_url, bus_url=bus_url, storage_url=storage_url,
        secret_key=secrets.token_urlsafe(32), registry_ttl=registry_ttl, env=dict(env or {}), nodes=nodes,
        edges=[Edge(f"edge-{i + 1}", port(81 + i)) for i in range(edges)],
    )


def _say(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


def node_env(state: ClusterState, node: Node) -> dict[str, str]:
    run_dir = Path(state.run_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env.update(state.env)
    public = state.edges[0].url if state.edges else node.url
    env.update(
        LIVECAST_DATA_DIR=str(run_dir / node.name),
        LIVECAST_DATABASE_URL=state.database_url,
        LIVECAST_BUS_URL=state.bus_url,
        LIVECAST_STORAGE_URL=state.storage_url,
        LIVECAST_SECRET_KEY=state.secret_key,
        LIVECAST_ROLES=node.roles,
        LIVECAST_HTTP_PORT=str(node.http_port),
        LIVECAST_RTMP_PORT=str(node.rtmp_port),
        LIVECAST_IRC_PORT=str(node.irc_port),
        LIVECAST_PUBLIC_URL=public,  # links the platform hands out point at the edge
        LIVECAST_ORIGIN_URL=node.url,  # what the edges reach this node's origin at
        LIVECAST_NODE_NAME=node.name,
        LIVECAST_REGISTRY_TTL=str(state.registry_ttl),
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


def start_node(state: ClusterState, node: Node) -> None:
    run_dir = Path(state.run_dir)
    (run_dir / node.name).mkdir(parents=True, exist_ok=True)
    with open(run_dir / f"{node.name}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "livecast", "serve"], env=node_env(state, node),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    node.pid = proc.pid


def _servers(nodes: list[Node], options: str = "") -> str:
    lines = [f"        server 127.0.0.1:{n.http_port}{options};" for n in nodes]
    # nginx needs at least one server per upstream; a layout without that role gets a dead one.
    return "\n".join(lines) or "        server 127.0.0.1:9 down;"


def render_edge(state: ClusterState, edge: Edge, *, workers: int = 1) -> Path:
    """deploy/nginx/edge.conf with this cluster's addresses filled in."""
    edge_dir = Path(state.run_dir) / edge.name
    (edge_dir / "cache").mkdir(parents=True, exist_ok=True)
    fail = " max_fails=2 fail_timeout=2s"
    conf = (
        EDGE_TEMPLATE.read_text()
        # Started as root, nginx's workers would run as "nobody" and could not read a private
        # run directory (pytest's are 0700): on loopback they run as the user who started it.
        .replace("@USER@", "user root;" if os.geteuid() == 0 else "")
        .replace("@WORKERS@", str(workers))
        .replace("@RUN_DIR@", str(edge_dir))
        .replace("@CACHE_DIR@", str(edge_dir / "cache"))
        .replace("@LISTEN@", f"127.0.0.1:{edge.port}")
        .replace("@ORIGINS@", _servers(state.with_role("ingest"), fail))
        .replace("@API@", _servers(state.with_role("api"), fail))
        .replace("@WEB@", _servers(state.with_role("web"), fail))
        .replace("@CHAT@", _servers(state.with_role("chat"), fail))
    )
    path = edge_dir / "nginx.conf"
    path.write_text(conf)
    return path


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise RuntimeError("nginx is not installed (scripts/cluster installs it; apt-get install nginx-light)")
    return found


def start_edge(state: ClusterState, edge: Edge, *, workers: int = 1) -> None:
    conf = render_edge(state, edge, workers=workers)
    edge_dir = conf.parent
    check = subprocess.run([nginx_binary(), "-t", "-q", "-e", str(edge_dir / "error.log"), "-c", str(conf)],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx rejects {conf}: {check.stderr.strip()}")
    with open(Path(state.run_dir) / f"{edge.name}.log", "ab") as log:
        proc = subprocess.Popen(
            [nginx_binary(), "-e", str(edge_dir / "error.log"), "-c", str(conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )
    edge.pid = proc.pid


def wait_healthy(url: str, timeout: float = 90, pid: int = 0) -> None:
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        if pid and not alive(pid):
            raise RuntimeError(f"{url}: the process exited during start-up (see its log)")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f}s ({last})")


def up(run_dir: Path, base: int, database_url: str, bus_url: str, storage_url: str, *,
       layout: str = "full", edges: int = 2, registry_ttl: float = 10.0, edge_workers: int = 1,
       timeout: float = 90, env: dict[str, str] | None = None) -> ClusterState:
    """Start everything and wait until each node and edge answers its health check."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "cluster.json").exists():
        down(run_dir)
    if database_url.startswith(("postgresql:", "postgres:")):
        asyncio.run(_ensure_database(database_url))
    state = plan(run_dir, base, database_url, bus_url, storage_url, layout=layout, edges=edges,
                 registry_ttl=registry_ttl, env=env)
    # Migrations once, before the nodes start, so that they do not race each other to create tables.
    subprocess.run([sys.executable, "-m", "livecast", "db", "upgrade"], env=node_env(state, state.nodes[0]),
                   check=True, stdout=subprocess.DEVNULL)
    try:
        for node in state.nodes:
            _say(f"starting {node.name} (roles {node.roles}) on http {node.http_port}"
                 + (f", rtmp {node.rtmp_port}" if node.rtmp_port else "")
                 + (f", irc {node.irc_port} (shared)" if node.irc_port else ""))
            start_node(state, node)
        _save(state)
        for node in state.nodes:
            wait_healthy(f"{node.url}/healthz", timeout, node.pid)
        for edge in state.edges:
            _say(f"starting {edge.name} (nginx) on http {edge.port}")
            start_edge(state, edge, workers=edge_workers)
        _save(state)
        for edge in state.edges:
            wait_healthy(f"{edge.url}/edge-healthz", timeout, edge.pid)
    except BaseException:
        down(run_dir)
        raise
    print_urls(state)
    return state


def print_urls(state: ClusterState) -> None:
    irc = next((n.irc_port for n in state.nodes if n.irc_port), 0)
    _say("cluster is up")
    for edge in state.edges:
        print(f"  {edge.name:<9} {edge.url}  (web, /hls/{{login}}/master.m3u8, Helix, chat WebSocket)")
    for node in state.nodes:
        if node.rtmp_port:
            print(f"  {node.name:<9} rtmp://127.0.0.1:{node.rtmp_port}/app/STREAM_KEY   origin {node.url}")
    if irc:
        print(f"  chat      irc://127.0.0.1:{irc} (shared by {len(state.with_role('chat'))} processes)")
    print(f"  logs      {state.run_dir}/*.log")
    print(f"  a user:   LIVECAST_DATABASE_URL={state.database_url} .venv/bin/livecast admin create-user alice --json")


def _save(state: ClusterState) -> None:
    path = Path(state.run_dir) / "cluster.json"
    path.write_text(json.dumps(asdict(state), indent=2) + "\n")
    path.chmod(0o600)  # it holds the cluster's secret key


def load(run_dir: Path) -> ClusterState:
    doc = json.loads((run_dir / "cluster.json").read_text())
    nodes = [Node(**n) for n in doc.pop("nodes")]
    edges = [Edge(**e) for e in doc.pop("edges")]
    return ClusterState(**doc, nodes=nodes, edges=edges)


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_pid(pid: int, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
    """Signal one process we started and wait for it; SIGKILL after ``timeout``."""
    if not alive(pid):
        return
    os.kill(pid, sig)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.05)


def down(run_dir: Path) -> None:
    path = run_dir / "cluster.json"
    if not path.exists():
        _say("no cluster running here")
        return
    state = load(run_dir)
    for edge in state.edges:
        stop_pid(edge.pid)
    for node in state.nodes:  # all at once: each drains for a few seconds
        if alive(node.pid):
            _say(f"stopping {node.name}")
            os.kill(node.pid, signal.SIGTERM)
    for node in state.nodes:
        stop_pid(node.pid)
    path.unlink()
    _say("cluster is down")


def status(run_dir: Path) -> int:
    if not (run_dir / "cluster.json").exists():
        _say("no cluster running here")
        return 1
    state = load(run_dir)
    for node in state.nodes:
        print(f"{node.name:<10} pid {node.pid:<8} {'up' if alive(node.pid) else 'DOWN':<5} "
              f"roles={node.roles} http={node.http_port} rtmp={node.rtmp_port or '-'} irc={node.irc_port or '-'}")
    for edge in state.edges:
        print(f"{edge.name:<10} pid {edge.pid:<8} {'up' if alive(edge.pid) else 'DOWN':<5} http={edge.port}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--dir", default=str(ROOT / "var" / "cluster"), help="run directory (logs, pids, data)")
    p.add_argument("--base-port", type=int, default=18000, help="ports are allocated from here (0: free ones)")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="full")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/livecast_cluster")
    p.add_argument("--bus-url", default="redis://127.0.0.1:6379/2")
    p.add_argument("--storage-url", default="", help="default: file:// under --dir (shared by the nodes)")
    p.add_argument("--registry-ttl", type=float, default=10.0, help="seconds a dead ingest node's streams stay routed")
    args = p.parse_args(argv)
    run_dir = Path(args.dir).resolve()
    if args.action == "up":
        storage = args.storage_url or f"file://{run_dir / 'objects'}"
        up(run_dir, args.base_port, args.database_url, args.bus_url, storage, layout=args.layout,
           registry_ttl=args.registry_ttl)
        return 0
    if args.action == "down":
        down(run_dir)
        return 0
    return status(run_dir)


if __name__ == "__main__":
    raise SystemExit(main())
