"""The atheris targets in ``fuzz/`` run their seeds and a few mutations here, without atheris,
so the harnesses keep working as the parsers change (a broken harness finds nothing)."""

from __future__ import annotations

import random

import pytest
from fuzz.targets import SEEDS, TARGETS


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_takes_seeds_and_mutations(name: str) -> None:
    rng = random.Random(name)
    target = TARGETS[name]
    for seed in [*SEEDS.get(name, []), b"", b"\x00" * 64, bytes(range(256))]:
        target(seed)
        for _ in range(30):
            data = bytearray(seed)
            for _ in range(rng.randint(1, 8)):
                if data and rng.random() < 0.7:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                else:
                    data[rng.randrange(len(data) + 1):0] = rng.randbytes(rng.randint(1, 16))
            target(bytes(data[: rng.randint(0, len(data))]))
