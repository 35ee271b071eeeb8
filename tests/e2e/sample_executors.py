"""Executors used by the end-to-end tests (loaded via DAGQ_ACTOR_MODULES)."""

from __future__ import annotations

import math

import dramatiq

from dagq.workers import FatalError, executor


@executor("test.ident")
def ident(payload):
    return {"i": payload["params"].get("i"), "item": payload.get("item")}


@executor("test.collect")
def collect(payload):
    deps = payload["deps"]
    return {"n": len(deps), "keys": sorted(deps)}


@executor("test.not_json")
def not_json(payload):
    return {"value": math.nan}


@executor("test.fatal")
def fatal(payload):
    raise FatalError("this input can never work")


@dramatiq.actor(max_retries=1)
def add(x, y):
    return x + y


@executor("test.capped", concurrency=3)
def capped(payload):
    import time

    time.sleep(0.05)
    return {}


@executor("test.rated", rate_per_s=20)
def rated(payload):
    return {}


@executor("test.route")
def route(payload):
    return {"route": payload["params"]["route"]}


@executor("test.items")
def items(payload):
    return {"items": [out["item"] for out in payload["deps"]["each"]]}
