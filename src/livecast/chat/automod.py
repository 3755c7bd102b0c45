"""AutoMod: a trained text classifier (``alt-profanity-check``, which ships its model) scoring
each message, with a per-channel level deciding how high a score is held back.

Level 0 is off; 1 holds only the most certain cases and 4 is the strictest, like Twitch's
AutoMod levels. The model loads lazily, on the first message in a channel that has AutoMod on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# Probability of being offensive above which a message is held, by level.
THRESHOLDS = {1: 0.95, 2: 0.85, 3: 0.7, 4: 0.5}


@lru_cache(maxsize=1)
def _model() -> Any:
    from profanity_check import predict_prob

    return predict_prob


def score(text: str) -> float:
    return float(_model()([text])[0])


def should_hold(text: str, level: int) -> bool:
    threshold = THRESHOLDS.get(level)
    if threshold is None:
        return False
    return score(text) >= threshold
