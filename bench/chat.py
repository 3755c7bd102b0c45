"""Chat fan-out: N connections in one room, R messages/s in; deliveries/s, latency, server CPU.

Every run starts the server under test in its own process (``livecast serve --role chat``, or the
baseline: a bare asyncio server that writes each received line, unchanged, to every
connection), receivers in one or more load-generator processes, and senders in this process.
Latency is receipt time minus the line's ``tmi-sent-ts`` (sampled on every 25th connection).
The baseline receives lines of the same shape and size as Livecast sends, so both write the
same bytes to the same connections; the ratio compares deliveries per second. A second bare
server, ``batched``, gathers lines for one 50 ms tick and then writes one buffer to every
connection, and does nothing else: the floor of a snapshot-per-pass fan-out on this machine,
where the kernel's cost per ``send`` sets the latency of a big room. Livecast's rounds
(chat/rooms.py) hand each chunk of connections the lines up to the moment it is written, so
they can beat it.

    python -m bench chat [--quick] [--connections 5000,15000] [--rates 10,100,1000] [--seconds 6]
                         [--processes 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, proc_cpu_seconds, table

ROOT = Path(__file__).resolve().parent.parent
ROOM = "benchroom"
SAMPLE_EVERY = 25
TICK_S = 0.05  # the batched baseline's tick, Livecast's TICK_S
TS_RE = re.compile(rb"tmi-sent-ts=(\d+)")
PER_GENERATOR = 8000
REDIS_URL = "redis://127.0.0.1:6379/12"  # with --processes above 1; flushed before each point
PG_ADMIN = os.environ.get("LIVECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Load generator (its own process) ------------------------------------------------------------------

class _Receiver(asyncio.Protocol):
    def __init__(self, stats: dict[str, Any], sample: bool, handshake: bytes) -> None:
        self.stats = stats
        self.sample = sample
        self.handshake = handshake
        self.joined = not handshake
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.handshake:
            transport.write(self.handshake)  # type: ignore[attr-defined]
        self.stats["connected"] += 1

    def data_received(self, data: bytes) -> None:
        stats = self.stats
        if not self.joined:
            if b"ROOMSTATE" in self.tail + data:
                self.joined = True
                stats["joined"] += 1
            self.tail = data[-16:]
            return
        if stats["counting"]:
            stats["lines"] += data.count(b"PRIVMSG")
            if self.sample:
                now = time.time() * 1000
                stats["latencies"].extend(now - int(ts) for ts in TS_RE.findall(data))
        elif data.startswith(b"PING"):
            pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats["lost"] += 1


async def _loadgen(port: int, count: int, offset: int, livecast: bool) -> None:
    _raise_nofile()
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"connected": 0, "joined": 0, "lines": 0, "latencies": [], "counting": False,
                             "lost": 0}
    transports = []
    for i in range(count):
        handshake = b""
        if livecast:
            handshake = (b"CAP REQ :twitch.tv/tags twitch.tv/commands\r\nNICK justinfan%d\r\nJOIN #%s\r\n"
                         % (offset + i, ROOM.encode()))
        source = f"127.0.0.{2 + (offset + i) % 200}"
        for attempt in range(5):
            try:
                t, _ = await loop.create_connection(
                    lambda h=handshake, s=(offset + i) % SAMPLE_EVERY == 0: _Receiver(stats, s, h),  # type: ignore[misc]
                    "127.0.0.1", port, local_addr=(source, 0))
                transports.append(t)
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        if i % 200 == 199:
            await asyncio.sleep(0)  # let handshakes flow
    target = count if livecast else 0
    deadline = time.monotonic() + 120
    while stats["joined"] < target and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    print(json.dumps({"ready": True, "connected": stats["connected"], "joined": stats["joined"]}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    seconds = float((await reader.readline()).decode())
    stats["counting"] = True
    started = time.monotonic()
    await asyncio.sleep(seconds)
    stats["counting"] = False
    elapsed = time.monotonic() - started
    lat = stats["latencies"]
    print(json.dumps({"lines": stats["lines"], "elapsed": elapsed, "lost": stats["lost"],
                      "latencies": lat[:: max(1, len(lat) // 20000)]}), flush=True)
    for t in transports:
        t.abort()


# Baseline server (its own process) ----------------------------------------------------------------

class _BaselineConn(asyncio.Protocol):
    def __init__(self, clients: set[asyncio.Transport]) -> None:
        self.clients = clients
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.clients.add(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" not in self.buf:
            return
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            out = line + b"\n"
            for client in self.clients:
                if client is not self.transport:
                    client.write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.clients.discard(self.transport)


class _BatchedConn(_BaselineConn):
    """The floor of Livecast's own design: lines gathered for ``TICK_S`` and written to every
    connection as one buffer, with nothing else (no parsing, tags, rules or bus)."""

    pending: list[bytes] = []
    scheduled = False

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\n" not in self.buf:
            return
        cut = self.buf.rindex(b"\n") + 1
        _BatchedConn.pending.append(self.buf[:cut])
        self.buf = self.buf[cut:]
        if not _BatchedConn.scheduled:
            _BatchedConn.scheduled = True
            asyncio.get_running_loop().call_later(TICK_S, self._flush, self.clients)

    @staticmethod
    def _flush(clients: set[asyncio.Transport]) -> None:
        _BatchedConn.scheduled = False
        out = b"".join(_BatchedConn.pending)
        _BatchedConn.pending = []
        for client in clients:
            client.write(out)


async def _baseline_server(port_file: str, batched: bool = False) -> None:
    _raise_nofile()
    # when the load generators go, writes to their closing sockets would log a warning each
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    clients: set[asyncio.Transport] = set()
    conn = _BatchedConn if batched else _BaselineConn
    server = await asyncio.get_running_loop().create_server(lambda: conn(clients), "127.0.0.1", 0,
                                                            backlog=4096)
    port = server.sockets[0].getsockname()[1]
    await asyncio.to_thread(Path(port_file).write_text, str(port))
    await asyncio.Event().wait()


# Orchestration (this process) -----------------------------------------------------------------------

def _sample_line(login: str, text: str) -> bytes:
    """A line the size and shape of the PRIVMSG Livecast writes for an anonymous room."""
    tags = (f"badge-info=;badges=;color=;display-name={login};emotes=;first-msg=0;flags=;"
            f"id=0f6a1b52-6b87-4d4a-9b1c-2a2e1f0f9c3d;mod=0;returning-chatter=0;room-id=100000000001;"
            f"subscriber=0;tmi-sent-ts={int(time.time() * 1000)};turbo=0;user-id=100000000002;user-type=")
    return f"@{tags} :{login}!{login}@{login}.tmi.twitch.tv PRIVMSG #{ROOM} :{text}\r\n".encode()


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def _start_livecast(workdir: Path, processes: int) -> tuple[list[asyncio.subprocess.Process], int, str]:
    """``processes`` chat processes sharing one IRC port (SO_REUSEPORT: the kernel spreads the
    connections) and, when there are several, one PostgreSQL database and a Redis bus."""
    procs: list[asyncio.subprocess.Process] = []
    irc_port, db_url = 0, ""
    if processes > 1:
        import asyncpg
        import redis.asyncio as aioredis

        client = aioredis.from_url(REDIS_URL)
        await client.flushdb()  # rate-limit counters of the last point's senders (same logins)
        await client.aclose()
        # SQLite is for one process: several share a PostgreSQL database, as a deployment does
        name = "livecast_bench_chat_" + workdir.name.replace("-", "_").lower()[-12:]
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    for k in range(processes):
        env = {**os.environ, "LIVECAST_LOG_LEVEL": "WARNING",
               "LIVECAST_BUS_URL": "memory://" if processes == 1 else REDIS_URL}
        if db_url:
            env["LIVECAST_DATABASE_URL"] = db_url
        data_dir = workdir / f"var{k}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "livecast", "serve", "--role", "chat", "--data-dir", str(data_dir),
            "--http-port", "0", "--irc-port", str(irc_port),
            env=env, preexec_fn=_raise_nofile, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        ports = data_dir / "ports.json"
        for _ in range(600):
            if _read(ports):
                break
            if proc.returncode is not None:
                raise RuntimeError("livecast exited during start-up")
            await asyncio.sleep(0.1)
        if k == 0:
            irc_port = json.loads(_read(ports))["irc"]
            db_url = db_url or f"sqlite:///{data_dir / 'livecast.db'}"
    return procs, irc_port, db_url


async def _drop_database(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        return
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


async def _start_baseline(workdir: Path, batched: bool) -> tuple[asyncio.subprocess.Process, int]:
    port_file = workdir / "baseline.port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.chat", "--batched-server" if batched else "--baseline-server", str(port_file),
        cwd=ROOT, preexec_fn=_raise_nofile)
    for _ in range(200):
        if _read(port_file):
            break
        await asyncio.sleep(0.05)
    return proc, int(_read(port_file))


async def _make_senders(db_url: str, count: int) -> list[tuple[str, str]]:
    from livecast.config import load_settings
    from livecast.identity import service as identity
    from livecast.store.db import Database

    settings = load_settings({}, database_url=db_url)
    db = Database(settings.resolved_database_url)
    out = []
    async with db.session() as session:
        app = await identity.ensure_admin_app(session)
        if await identity.get_user_by_login(session, ROOM) is None:
            await identity.create_user(session, ROOM)
        for i in range(count):
            user, _ = await identity.create_user(session, f"sender{i}")
            token = await identity.issue_token(session, app.client_id, user.id, ["chat:read", "chat:edit"])
            out.append((user.login, token.access_token))
    await db.close()
    return out


async def _sender_conns(port: int, senders: list[tuple[str, str]] | None, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    readers = []
    for i in range(count):
        # from other addresses than the receivers', and few per address: at 1,000 msg/s there
        # are some 1,900 senders, past the per-address connection limit from one address
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.1.{2 + i % 200}", 0))
        if senders is not None:
            login, token = senders[i]
            writer.write(f"PASS oauth:{token}\r\nNICK {login}\r\nJOIN #{ROOM}\r\n".encode())
        writers.append(writer)
        readers.append(reader)
    if senders is not None:
        for reader in readers:
            while True:
                line = await asyncio.wait_for(reader.readline(), 30)
                if b" 366 " in line or not line:
                    break
    # keep draining replies (USERSTATE) so the server never sees the senders as slow
    for reader in readers:
        asyncio.get_running_loop().create_task(_drain(reader))
    return writers


async def _drain(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(65536):
            pass


async def _run_point(n: int, rate: int, seconds: float, livecast: bool, batched: bool = False,
                     processes: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lcbench-") as tmp:
        workdir = Path(tmp)
        if livecast:
            servers, port, db_url = await _start_livecast(workdir, processes)
            sender_count = max(1, math.ceil(rate * 30 / 20 * 1.25))
            senders: list[tuple[str, str]] | None = await _make_senders(db_url, sender_count)
        else:
            server, port = await _start_baseline(workdir, batched)
            servers = [server]
            sender_count = max(1, min(50, rate))
            senders = None
        gens: list[asyncio.subprocess.Process] = []
        try:
            parts = max(1, math.ceil(n / PER_GENERATOR))
            for part in range(parts):
                count = n // parts + (1 if part < n % parts else 0)
                gens.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.chat", "--loadgen", str(port), str(count), str(part * PER_GENERATOR),
                    "1" if livecast else "0", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, preexec_fn=_raise_nofile, limit=1 << 26))
            ready = [json.loads(await asyncio.wait_for(g.stdout.readline(), 300)) for g in gens]  # type: ignore[union-attr]
            writers = await _sender_conns(port, senders, sender_count)
            await asyncio.sleep(0.5)
            for g in gens:
                g.stdin.write(f"{seconds}\n".encode())  # type: ignore[union-attr]
                await g.stdin.drain()  # type: ignore[union-attr]
            load0 = os.getloadavg()[0]
            cpu0 = sum(proc_cpu_seconds(each.pid) for each in servers)
            t0 = time.monotonic()
            sent = 0
            tick = 0.01
            while (elapsed := time.monotonic() - t0) < seconds + 0.5:
                due = int(elapsed * rate) - sent
                for _ in range(max(0, due)):
                    w = writers[sent % sender_count]
                    text = f"message {sent} from the load generator LiveHype"
                    if livecast:
                        w.write(f"PRIVMSG #{ROOM} :{text}\r\n".encode())
                    else:
                        w.write(_sample_line(f"sender{sent % sender_count}", text))
                    sent += 1
                await asyncio.sleep(tick)
            cpu = sum(proc_cpu_seconds(each.pid) for each in servers) - cpu0
            wall = time.monotonic() - t0
            results = [json.loads(await asyncio.wait_for(g.stdout.readline(), 120)) for g in gens]  # type: ignore[union-attr]
            for w in writers:
                w.close()
        finally:
            for g in gens:
                with contextlib.suppress(ProcessLookupError):
                    g.kill()
                await g.wait()
            for each in servers:
                each.terminate()
            for each in servers:
                try:
                    await asyncio.wait_for(each.wait(), timeout=15)
                except TimeoutError:
                    each.kill()
                    await each.wait()
            if livecast:
                await _drop_database(db_url)
    lines = sum(r["lines"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    lat = [x for r in results for x in r["latencies"]]
    return {
        "server": (f"livecast x{processes}" if processes > 1 else "livecast") if livecast
        else "batched" if batched else "baseline", "connections": n, "rate": rate,
        "joined": sum(r.get("joined", 0) for r in ready) if livecast else sum(r["connected"] for r in ready),
        "deliveries_per_s": round(lines / elapsed), "expected_per_s": n * rate,
        "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
        "server_cpu_pct": round(100 * cpu / wall, 1), "lost": sum(r["lost"] for r in results),
        "loadavg": round(max(load0, os.getloadavg()[0]), 1),
    }


async def main(args: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench chat")
    p.add_argument("--quick", action="store_true", help="500 and 2,000 connections, 10 and 100 msg/s")
    p.add_argument("--connections", default="5000,15000")
    p.add_argument("--rates", default="10,100,1000")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline (for profiling runs only)")
    p.add_argument("--processes", default="1",
                   help="chat processes sharing the port over a Redis bus, e.g. 1,2 to measure both")
    opts = p.parse_args(args)
    _raise_nofile()
    if opts.quick:
        sizes, rates, seconds = [500, 2000], [10, 100], 3.0
    else:
        sizes = [int(x) for x in opts.connections.split(",")]
        rates = [int(x) for x in opts.rates.split(",")]
        seconds = opts.seconds
    rows = []
    for n in sizes:
        for rate in rates:
            measured = [await _run_point(n, rate, seconds, livecast=True, processes=int(procs))
                        for procs in opts.processes.split(",")]
            ours, extra = measured[0], measured[1:]
            if opts.no_baseline:
                rows.extend(measured)
                print(table(measured), flush=True)
                continue
            base = await _run_point(n, rate, seconds, livecast=False)
            floor = await _run_point(n, rate, seconds, livecast=False, batched=True)
            ours["ratio_vs_baseline"] = round(ours["deliveries_per_s"] / max(1, base["deliveries_per_s"]), 2)
            ours["ratio_vs_batched"] = round(ours["deliveries_per_s"] / max(1, floor["deliveries_per_s"]), 2)
            for each in extra:
                each["ratio_vs_baseline"] = round(each["deliveries_per_s"] / max(1, base["deliveries_per_s"]), 2)
                each["ratio_vs_batched"] = round(each["deliveries_per_s"] / max(1, floor["deliveries_per_s"]), 2)
            rows.extend([*measured, base, floor])
            print(table([*measured, base, floor]), flush=True)
    print("\n" + table(rows))
    return {"cpus": os.cpu_count(), "seconds": seconds, "rows": rows}


def _fast_loop() -> None:
    """The load generator is the measuring instrument, the same for both servers: give it uvloop
    (shipped with uvicorn[standard]) so that reading 15,000 sockets costs it less."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    if sys.argv[1] == "--loadgen":
        _fast_loop()
        asyncio.run(_loadgen(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"))
    elif sys.argv[1] == "--baseline-server":
        asyncio.run(_baseline_server(sys.argv[2]))
    elif sys.argv[1] == "--batched-server":
        asyncio.run(_baseline_server(sys.argv[2], batched=True))
