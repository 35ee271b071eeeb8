"""Settings, read once from the environment (and a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob, each documented in docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="DAGQ_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str | None = None
    data_dir: Path = Path(".dagq")
    # As root, the embedded Postgres runs as this OS user, created on first use.
    embedded_pg_user: str = Field("embedded_postgres", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    lease_ttl_s: float = Field(30.0, gt=0)
    heartbeat_s: float = Field(5.0, gt=0)
    # A stopping worker lets running nodes finish this long, then interrupts them.
    shutdown_grace_s: float = Field(30.0, ge=0)
    sweep_interval_s: float = Field(5.0, gt=0)
    actor_modules: str = ""
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_output_bytes: int = Field(1_048_576, gt=0)
    auth: Literal["on", "off"] = "on"
    retention_days: float = Field(7.0, gt=0)
    worker_dead_after_s: float = Field(30.0, gt=0)
    # A plain Dramatiq message queued this long for an actor no worker has served for
    # this long either is failed by the sweeper (error type DeadLettered).
    dead_letter_after_s: float = Field(3600.0, gt=0)
    # Pool sizes (each the most server connections that pool holds; see the connection
    # budget in docs/operations.md): an API process's, a worker process's (0: its
    # threads + 4) and the sweeper's.
    pool_size: int = Field(10, ge=1)
    worker_pool_size: int = Field(0, ge=0)
    sweeper_pool_size: int = Field(4, ge=1)
    # LISTEN needs a session: through a transaction pooler (PgBouncer pool_mode=transaction)
    # it never fires. listen_url: a direct (or session-pooled) URL for the LISTEN
    # connections (unset: the database URL); listen off: no LISTEN at all, poll only.
    listen_url: str | None = None
    listen: Literal["on", "off"] = "on"
    # Named prepared statements live in one server session, which a transaction pooler
    # hands to another client: auto turns them off when the server is reached through a
    # pooler (one that refuses or drops startup options, as PgBouncer does).
    prepared_statements: Literal["auto", "on", "off"] = "auto"
    # builtin.fail and builtin.crash (test tools: crash kills its worker) exist only when on.
    test_executors: Literal["on", "off"] = "off"
    # builtin.http may reach these non-public hosts, IPs or CIDRs (comma-separated).
    http_allow: str = ""
    # A webhook delivery is given up (`failed`) after this many attempts (or 24 h).
    webhook_max_attempts: int = Field(30, ge=1, le=1000)
    # The sweeper's deliverer wakes on dagq_webhooks at once; without a notification
    # (DAGQ_LISTEN=off, a lost NOTIFY, a retry coming due) it looks every this often.
    webhook_poll_s: float = Field(1.0, gt=0, le=3600)
    # Deliveries in flight at once per sweeper (the bound on its sending threads and on
    # its open HTTP connections, which are kept alive between deliveries).
    webhook_concurrency: int = Field(16, ge=1, le=256)
    # Bounds on every database session dagq opens, in seconds (0: no bound). A client
    # frozen inside a transaction (SIGSTOP, a VM pause, a blackholed network) holds its
    # row locks until Postgres ends the session; these bound that, and every wait.
    db_idle_in_transaction_timeout_s: float = Field(10.0, ge=0)
    db_lock_timeout_s: float = Field(10.0, ge=0)
    db_statement_timeout_s: float = Field(60.0, ge=0)
    db_migration_timeout_s: float = Field(600.0, ge=0)  # statements and lock waits of migrations
    db_connect_timeout_s: float = Field(10.0, ge=0)
    # TCP: unacknowledged data or a silent peer ends the connection after about this
    # long (tcp_user_timeout and keepalives; no effect over unix sockets).
    db_tcp_user_timeout_s: float = Field(10.0, ge=0)
    # A pooled connection is replaced after about this long (rebalancing after a
    # failover or behind a proxy); dagq.runtime.db.open_pool.
    db_max_lifetime_s: float = Field(1800.0, gt=0)
    # Every database call of an API request: pool checkout, statement, retries of
    # transient errors. Past it the client gets 503 database_unavailable.
    api_db_timeout_s: float = Field(5.0, gt=0)
    # Unset: INFO for the servers (up, worker, api, sweeper, bench), WARNING for the
    # client commands, whose output is their answer.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None
    # text: the lines a person reads (on a terminal too); json: one object per line,
    # with the run, node, attempt and tenant a line is about (dagq.runtime.logs).
    log_format: Literal["text", "json"] = "text"
    # Stored streamed output (dagq.node_stream) is bounded: a run's and a tenant's bytes
    # (0: no cap; over it, stream() raises StreamTooLarge), and what each earlier attempt
    # of a node keeps once a newer attempt streams (the tail of its text).
    max_stream_bytes_per_run: int = Field(64 * 1024 * 1024, ge=0)
    max_stream_bytes_per_tenant: int = Field(8 * 1024**3, ge=0)
    stream_tail_bytes: int = Field(64 * 1024, ge=0)
    # Signals a run keeps that no node has taken yet; one more is refused (409).
    max_buffered_signals_per_run: int = Field(100, ge=1)
    # A worker's lock waits (at most DAGQ_DB_LOCK_TIMEOUT_S; 0: that one): past it, a
    # lease steps around the runs whose rows are held and a completion batch commits its
    # other runs apart, so one run held by a frozen client stalls no other run's work.
    worker_lock_timeout_s: float = Field(1.0, ge=0)

    @field_validator("auth", mode="before")
    @classmethod
    def _normalise_auth(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def actor_module_list(self) -> list[str]:
        return [m.strip() for m in self.actor_modules.split(",") if m.strip()]

    @field_validator("log_level", mode="before")
    @classmethod
    def _normalise_level(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _normalise_format(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or "text"
        return value

    @field_validator("test_executors", "listen", "prepared_statements", mode="before")
    @classmethod
    def _normalise_switch(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def listen_target(self) -> str | None:
        """The URL LISTEN connections use (None: the database URL)."""
        return self.listen_url or None

    @property
    def http_allow_list(self) -> list[str]:
        return [e.strip() for e in self.http_allow.split(",") if e.strip()]


def describe_invalid(exc: ValueError) -> str:
    """One line per bad setting, joined: `DAGQ_LOG_FORMAT: Input should be 'text' or
    'json' (got 'xml')` (pydantic's own text spans several lines and a URL)."""
    if not isinstance(exc, ValidationError):
        return " ".join(str(exc).split())
    parts = []
    for error in exc.errors():
        loc = "_".join(str(p) for p in error["loc"]).upper()
        name = f"DAGQ_{loc}" if loc else "settings"
        got = f" (got {error['input']!r:.80})" if "input" in error else ""
        parts.append(" ".join(f"{name}: {error['msg']}{got}".split()))  # one line
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
