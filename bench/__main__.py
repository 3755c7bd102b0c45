"""Run one benchmark by name; each prints its figures and writes ``bench/results/NAME.json``.

A benchmark is a module ``bench/<name>.py`` with ``async def main(args: list[str]) -> dict``
(or a plain ``def main``). Each measures a baseline in the same run and reports the ratio.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m bench NAME [ARGS...]\n\nbenchmarks:")
        for name in names:
            doc = (importlib.import_module(f"bench.{name}").__doc__ or "").strip().splitlines()
            print(f"  {name:<12} {doc[0] if doc else ''}")
        return 0
    name, args = argv[0], argv[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; have: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    started = time.time()
    result = module.main(args)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    doc = {"benchmark": name, "started": started, "seconds": round(time.time() - started, 1), "results": result}
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
