"""The ``livecast`` command: serve, database, administration and benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from livecast import __version__
from livecast.config import ConfigError, Settings, load_settings

AdminFn = Callable[[argparse.Namespace, Settings], Awaitable[dict[str, Any]]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="livecast",
        description="Livecast: a self-hostable, Twitch-compatible live streaming platform.",
        epilog="Configuration comes from LIVECAST_* environment variables (see README.md).",
    )
    p.add_argument("--version", action="version", version=f"livecast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the platform (all roles by default)",
                           description="Run Livecast. Every role runs in this process unless --role says otherwise.")
    serve.add_argument("--role", help="comma-separated roles: api,web,chat,ingest,worker or all (LIVECAST_ROLES)")
    serve.add_argument("--host", help="bind address (LIVECAST_HOST, default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="HTTP port, 0 for a free one (LIVECAST_HTTP_PORT)")
    serve.add_argument("--rtmp-port", type=int, help="RTMP port, 0 for a free one (LIVECAST_RTMP_PORT)")
    serve.add_argument("--irc-port", type=int, help="IRC port, 0 for a free one (LIVECAST_IRC_PORT)")
    serve.add_argument("--data-dir", help="data directory (LIVECAST_DATA_DIR, default ./var)")

    db = sub.add_parser("db", help="database migrations", description="Manage the database schema.")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION")
    dbsub.add_parser("upgrade", help="apply every pending migration", description="Apply every pending migration.")
    dbsub.add_parser("current", help="show the applied revision", description="Show the applied revision(s).")

    admin = sub.add_parser("admin", help="administration without a browser",
                           description="Administer users, apps and tokens. --json prints machine-readable output.")
    asub = admin.add_subparsers(dest="admin_command", metavar="ACTION")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        a = asub.add_parser(name, help=help_text, description=help_text)
        a.add_argument("--json", action="store_true", help="print JSON")
        return a

    a = add("create-user", "create a user and channel; prints its stream key and an all-scopes token")
    a.add_argument("login")
    a.add_argument("--password", help="password for web sign-in (none: the user cannot sign in)")
    a.add_argument("--email", default="")
    a.add_argument("--partner", action="store_true", help="make the user a partner (full transcoding ladder)")
    a.add_argument("--affiliate", action="store_true")
    a.add_argument("--staff", action="store_true")
    a = add("create-app", "register an OAuth2 application; prints its client id and secret")
    a.add_argument("name")
    a.add_argument("--redirect-uri", action="append", default=[], help="allowed redirect URI (repeatable)")
    a.add_argument("--owner", help="login of the owning user")
    a = add("issue-token", "issue a user (or app, with --app-token) access token")
    a.add_argument("login", nargs="?")
    a.add_argument("--scopes", default="", help="space- or comma-separated scopes; 'all' for every scope")
    a.add_argument("--client-id", default="", help="the app the token belongs to (default: the admin app)")
    a.add_argument("--app-token", action="store_true", help="an app access token (no user)")
    a.add_argument("--expires-in", type=int, default=0, help="lifetime in seconds (default: LIVECAST_TOKEN_LIFETIME)")
    a = add("reset-stream-key", "make a new stream key for a channel (the old one stops working)")
    a.add_argument("login")
    a = add("show-stream-key", "show the stream key's first characters (the key itself is stored hashed)")
    a.add_argument("login")
    a = add("set-partner", "set a user's broadcaster type")
    a.add_argument("login")
    a.add_argument("--type", default="partner", choices=["partner", "affiliate", "none"])
    a = add("payouts", "creators' subscription payouts for one month, from the ledger")
    a.add_argument("--month", required=True, help="YYYY-MM, e.g. 2026-11")
    a.add_argument("--csv", action="store_true", help="print CSV")
    a = add("stats", "a creator's analytics: per day, and the last streams' viewers, chat and follows")
    a.add_argument("login")
    a.add_argument("--days", type=int, default=30, help="days of daily figures (default 30)")

    bench = sub.add_parser("bench", help="run a benchmark from bench/",
                           description="Run a benchmark (python -m bench NAME); prints figures and writes JSON.")
    bench.add_argument("name", nargs="?", help="benchmark name; omit to list them")
    bench.add_argument("args", nargs=argparse.REMAINDER)

    cluster = sub.add_parser("cluster", help="a whole multi-node Livecast on loopback (up, down, status)",
                             description="Same as scripts/cluster, without installing anything: "
                                         "livecast cluster up|down|status [--dir D] [--base-port N] ...")
    cluster.add_argument("args", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "db":
            return _db(args, parser)
        if args.command == "admin":
            return _admin(args, parser)
        if args.command == "bench":
            return _bench(args)
        if args.command == "cluster":
            from livecast import cluster

            return cluster.main(list(args.args))
    except ConfigError as exc:
        print(f"livecast: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2


def _settings(args: argparse.Namespace | None = None) -> Settings:
    overrides: dict[str, Any] = {}
    if args is not None:
        for flag, field in (("host", "host"), ("http_port", "http_port"), ("rtmp_port", "rtmp_port"),
                            ("irc_port", "irc_port"), ("data_dir", "data_dir"), ("role", "roles")):
            value = getattr(args, flag, None)
            if value is not None:
                overrides[field] = value
    return load_settings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from livecast import logs, server

    logs.setup(settings.log_level, settings.log_format)
    try:
        server.run(settings)
    except OSError as exc:
        print(f"livecast: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _db(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    settings = _settings()
    from livecast.store.db import Database

    async def go() -> None:
        db = Database(settings.resolved_database_url)
        try:
            if args.db_command == "upgrade":
                await db.upgrade()
                print("database at", ", ".join(sorted(await db.current_revisions())))
            else:
                print(", ".join(sorted(await db.current_revisions())) or "empty")
        finally:
            await db.close()

    if args.db_command not in {"upgrade", "current"}:
        parser.parse_args(["db", "--help"])
    asyncio.run(go())
    return 0


def _admin(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from livecast import admin

    fn: AdminFn | None = admin.COMMANDS.get(args.admin_command or "")
    if fn is None:
        parser.parse_args(["admin", "--help"])
        return 2
    settings = _settings()
    try:
        result = asyncio.run(admin.run(fn, args, settings))
    except admin.AdminError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"livecast admin: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[2]
    if not (root / "bench").is_dir():
        print("livecast: bench/ is only in a source checkout", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "bench"] + ([args.name] if args.name else []) + list(args.args)
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.call(cmd, cwd=root, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
