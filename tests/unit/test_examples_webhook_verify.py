"""The webhook signature check receivers copy (examples/webhook_receiver.verify, shown in
docs/webhooks.md) says no to any header it cannot match, never raises: a request with a
non-ASCII or malformed dagq-signature (anyone can send one) must be a 401, not a crash
of the receiver's handler."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dagq.service.webhooks import sign
from examples.webhook_receiver import verify

SECRET = "a-test-secret-of-some-length"
BODY = b'{"event":"run_failed"}'
NOW = 1_800_000_000


def test_a_good_signature_passes_and_a_changed_body_does_not() -> None:
    header = sign(SECRET, NOW, BODY)
    assert verify(SECRET, header, BODY, now=NOW)
    assert not verify(SECRET, header, BODY + b" ", now=NOW)
    assert not verify(SECRET, header, BODY, now=NOW + 301)


@pytest.mark.parametrize("v1", ["é" * 64, "\u00ff", "zz", ""])
def test_a_malformed_signature_is_refused_without_raising(v1: str) -> None:
    assert verify(SECRET, f"t={NOW},v1={v1}", BODY, now=NOW) is False


def test_the_docs_show_the_same_check() -> None:
    docs = Path(__file__).parents[2].joinpath("docs", "webhooks.md").read_text()
    code = Path(__file__).parents[2].joinpath("examples", "webhook_receiver.py").read_text()
    compare = re.compile(r"hmac\.compare_digest\(.*\)")
    assert compare.findall(docs) == compare.findall(code)
