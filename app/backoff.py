"""Retry delays: exponential, capped, with jitter so retries of a burst spread out."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Delay before the attempt after `attempt` (1-based) failed.

    The base doubles per attempt from `initial_s` up to `max_s`; the delay is drawn
    uniformly from [base/2, base] ("equal jitter": never zero, never above the cap).
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    exponent = min(attempt - 1, 62)  # 2**62 already exceeds any cap
    base = min(max_s, initial_s * (2**exponent))
    draw = (rng or random).uniform(0.5, 1.0)
    return base * draw
