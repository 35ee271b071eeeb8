from __future__ import annotations

import random

import pytest

from dagq.backoff import backoff_delay


def test_delay_doubles_with_jitter_and_respects_the_cap() -> None:
    rng = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 60), (40, 60)]:
        for _ in range(50):
            delay = backoff_delay(attempt, 1.0, 60.0, rng)
            assert base / 2 <= delay <= base


def test_jitter_spreads_retries() -> None:
    rng = random.Random(1)
    assert len({round(backoff_delay(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 10


def test_zero_initial_means_immediate_retry() -> None:
    assert backoff_delay(5, 0.0, 60.0) == 0.0


def test_huge_attempt_does_not_overflow() -> None:
    assert backoff_delay(10_000, 1.0, 30.0) <= 30.0


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 2.0)
