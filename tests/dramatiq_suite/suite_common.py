"""The helpers Dramatiq's tests import from `tests.common` (copied as common.py beside
them), written for dagq: a worker context manager and the platform skip marks."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager

import pika
import pytest
from dramatiq import Worker
from dramatiq.threading import is_gevent_active


@contextmanager
def worker(*args, **kwargs):
    started = Worker(*args, **kwargs)
    try:
        started.start()
        yield started
    finally:
        started.stop()


skip_in_ci = pytest.mark.skipif(os.getenv("CI") is not None, reason="skipped in CI")
skip_on_windows = pytest.mark.skipif(platform.system() == "Windows", reason="Windows")
skip_on_pypy = pytest.mark.skipif(platform.python_implementation() == "PyPy",
                                  reason="time limits are not supported under PyPy")
skip_with_gevent = pytest.mark.skipif(is_gevent_active(), reason="gevent")
skip_without_gevent = pytest.mark.skipif(not is_gevent_active(), reason="no gevent")
skip_unless_rabbit_mq = pytest.mark.skip(reason="no RabbitMQ: dagq's suite runs on Postgres")
RABBITMQ_USERNAME = RABBITMQ_PASSWORD = "guest"
# A RabbitmqBroker connects lazily: tests that only build one need no server.
RABBITMQ_CREDENTIALS = pika.credentials.PlainCredentials(RABBITMQ_USERNAME, RABBITMQ_PASSWORD)
