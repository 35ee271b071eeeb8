"""An executor whose every attempt leaves an effect outside the database (loaded by the
failover tests' workers via DAGQ_ACTOR_MODULES): one line "run node attempt" appended to
the file DAGQ_TEST_EFFECTS names. A line twice for one attempt is an attempt run twice;
a succeeded node without a line never ran."""

from __future__ import annotations

import os
import time

from dagq import current_node, executor


@executor("failover.effect", max_attempts=10)
def effect(payload: dict) -> dict:
    node = current_node()
    line = f"{node.run_id} {node.node_key} {node.attempt}\n".encode()
    fd = os.open(os.environ["DAGQ_TEST_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines of many processes never mix
    finally:
        os.close(fd)
    time.sleep(float(payload["params"].get("sleep_s", 0.02)))
    return {"key": node.node_key, "attempt": node.attempt}


def effects(path: str) -> list[tuple[str, str, int]]:
    """The effects recorded so far, in order."""
    try:
        with open(path) as file:
            return [(r, k, int(a)) for r, k, a in (line.split() for line in file if line.strip())]
    except FileNotFoundError:
        return []
