"""The one classifier of database errors a failover produces (dagq.runtime.failover):
which drop the connection and redo the unit of work, which only redo it, which fail."""

from __future__ import annotations

import random

import psycopg
import psycopg_pool
import pytest
from psycopg import errors

from dagq.runtime.failover import (
    POOL_RECONNECT_MAX_S,
    RECONNECT_MAX_S,
    ReadOnlyServer,
    ReconnectBackoff,
    Verdict,
    classify,
    reconnect_delays,
    retryable,
    wrong_server,
)


@pytest.mark.parametrize("exc", [
    errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
    errors.AdminShutdown("terminating connection due to administrator command"),
    errors.CrashShutdown("terminating connection because of crash of another server process"),
    errors.CannotConnectNow("the database system is starting up"),
    errors.ConnectionFailure("connection failure"),
    errors.SqlclientUnableToEstablishSqlconnection("could not connect"),
    errors.FeatureNotSupported("cannot execute LISTEN during recovery"),
    errors.IdleInTransactionSessionTimeout("terminating connection due to idle timeout"),
    psycopg.OperationalError("server closed the connection unexpectedly"),  # no SQLSTATE
    ReadOnlyServer("the server at h1:5432 is read-only or in recovery"),
])
def test_lost_or_wrong_server_errors_drop_the_connection_and_retry(exc) -> None:
    assert classify(exc) is Verdict.RECONNECT
    assert retryable(exc)


@pytest.mark.parametrize("exc", [
    errors.SerializationFailure("could not serialize access"),
    errors.DeadlockDetected("deadlock detected"),
    errors.LockNotAvailable("canceling statement due to lock timeout"),
    errors.QueryCanceled("canceling statement due to statement timeout"),
    psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
])
def test_rollbacks_and_timeouts_retry_on_the_same_connection(exc) -> None:
    assert classify(exc) is Verdict.RETRY


@pytest.mark.parametrize("exc", [
    errors.FeatureNotSupported("cannot use a window function here"),  # 0A000, not recovery
    errors.UniqueViolation("duplicate key"),
    errors.UndefinedTable("relation does not exist"),
    errors.InvalidTextRepresentation("invalid input syntax"),
    ValueError("not a database error"),
])
def test_other_errors_fail(exc) -> None:
    assert classify(exc) is Verdict.FAIL
    assert not retryable(exc)


def test_only_read_only_and_recovery_errors_point_at_the_wrong_server() -> None:
    assert wrong_server(errors.ReadOnlySqlTransaction("read-only"))
    assert wrong_server(errors.FeatureNotSupported("cannot execute LISTEN during recovery"))
    assert wrong_server(ReadOnlyServer("standby"))
    assert not wrong_server(errors.AdminShutdown("terminating connection"))
    assert not wrong_server(errors.FeatureNotSupported("cannot use a window function here"))


def test_reconnect_delays_are_jittered_doubling_and_capped() -> None:
    delays = reconnect_delays(random.Random(7))
    first = [next(delays) for _ in range(12)]
    assert 0.05 <= first[0] <= 0.1
    assert all(d <= RECONNECT_MAX_S for d in first)
    assert first[-1] >= RECONNECT_MAX_S / 2
    others = reconnect_delays(random.Random(8))
    assert first[:4] != [next(others) for _ in range(4)]  # two processes drift apart


def test_pool_reconnects_back_off_to_two_seconds_at_most_until_the_timeout() -> None:
    attempt = ReconnectBackoff(timeout=30)
    delays = []
    for now in range(12):
        attempt.update_delay(float(now))
        delays.append(attempt.delay)
    assert 0.125 <= delays[0] <= 0.25
    assert all(d <= POOL_RECONNECT_MAX_S for d in delays)
    late = ReconnectBackoff(timeout=1.0)
    late.update_delay(100.0)
    late.update_delay(100.9)
    assert late.delay <= 0.1 + 1e-9  # never past the attempt's give-up time
    assert late.time_to_give_up(101.0)
