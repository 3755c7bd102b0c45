"""Coverage-guided fuzzing of one target with atheris (a longer run than the test suite's).

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/run.py rtmp_connection -max_total_time=600 fuzz/corpus/rtmp_connection

Arguments after the target name go to libFuzzer (``-max_total_time``, ``-jobs``, a corpus
directory...). The seeds in :data:`fuzz.targets.SEEDS` are written into the corpus directory
when it is empty. A crash leaves ``crash-<sha1>`` with the input: add it as a regression test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atheris

with atheris.instrument_imports():
    from fuzz.targets import SEEDS, TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: fuzz/run.py TARGET [libFuzzer args]; targets: {', '.join(TARGETS)}")
    name = sys.argv.pop(1)
    target = TARGETS[name]
    corpora = [Path(a) for a in sys.argv[1:] if not a.startswith("-")]
    for corpus in corpora:
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for i, seed in enumerate(SEEDS.get(name, [])):
                (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
