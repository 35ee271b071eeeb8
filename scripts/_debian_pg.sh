#!/usr/bin/env bash
# Run a command against a throwaway cluster of Debian's packaged PostgreSQL MAJOR, with
# DAGQ_TEST_DATABASE_URL (a superuser URL on a unix socket) pointing at it; the cluster
# is stopped and its directory removed when the command ends, fails or is interrupted.
# Used by scripts/test-lowest so that CI runs the suite on a second PostgreSQL major
# beside the embedded 18 of ./scripts/test.
#
# Usage: scripts/_debian_pg.sh MAJOR PYTHON COMMAND [ARGS...]
#   PYTHON: an interpreter with dagq installed (it creates the server's OS user the way
#           the embedded server does, under the same machine-wide lock).
#
# postgresql-MAJOR is installed when missing (root with apt-get only, in one apt run that
# waits for another apt or dpkg instead of failing on its lock). When it cannot be had,
# this says so on stderr and runs the command on the embedded server instead: a CI log
# always says which server the tests ran on, and nothing is silently skipped.
set -euo pipefail
major="$1" python="$2"
shift 2
if ! [[ "$major" =~ ^[1-9][0-9]*$ ]]; then
    echo "dagq: the PostgreSQL major must be a number like 15, not '$major'" >&2
    exit 2
fi
bin="/usr/lib/postgresql/$major/bin"

fall_back() {  # fall_back REASON COMMAND...
    echo "dagq: PostgreSQL $major is not available ($1); running on the embedded" \
        "PostgreSQL instead" >&2
    shift
    unset DAGQ_TEST_DATABASE_URL
    exec "$@"
}

if [ ! -x "$bin/postgres" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        fall_back "no $bin/postgres, and installing postgresql-$major needs root and apt-get" "$@"
    fi
    echo "dagq: installing postgresql-$major (Debian's package)" >&2
    apt_lock=(-o DPkg::Lock::Timeout=600)
    { apt-get "${apt_lock[@]}" update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get "${apt_lock[@]}" install -y -qq \
            --no-install-recommends "postgresql-$major"; } >/dev/null 2>&1 \
        || fall_back "apt-get could not install postgresql-$major" "$@"
    [ -x "$bin/postgres" ] || fall_back "postgresql-$major has no $bin/postgres" "$@"
fi

# Postgres refuses to run as root: as root, the server runs as the embedded server's
# unprivileged OS user (DAGQ_EMBEDDED_PG_USER, else embedded_postgres), created if
# missing by dagq's own ensure_system_user (a flock, so parallel runs cannot race on
# useradd). Otherwise it runs as the caller.
as_user=()
if [ "$(id -u)" = 0 ]; then
    user="$("$python" -c '
from dagq.runtime.embedded_pg import EmbeddedPostgres, ensure_system_user
from pathlib import Path
name = EmbeddedPostgres(Path("/nonexistent")).system_user  # the same name rules
ensure_system_user(name)
print(name)')"
    as_user=(runuser -u "$user" --)
fi
# From /: the server's OS user may not be allowed into the caller's directory.
pg() { (cd / && "${as_user[@]}" "$@"); }

# A cluster left by a run that was killed outright (SIGKILL skips traps) is stopped and
# removed by the next run. A run holds an exclusive lock on its directory's owner.lock
# for as long as it or its command lives (the command inherits the descriptor), so a
# directory whose lock anyone holds is in use. Only real directories of this OS user
# (not links, not another user's look-alikes in /tmp) are considered.
for stale in /tmp/dagq-pg"$major"-*; do
    [ -d "$stale" ] && [ ! -L "$stale" ] && [ -O "$stale" ] || continue
    [ -f "$stale/owner.lock" ] && [ ! -L "$stale/owner.lock" ] || continue
    flock -n "$stale/owner.lock" true 2>/dev/null || continue
    pg "$bin/pg_ctl" -D "$stale/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$stale" 2>/dev/null || true
done

tmp="$(mktemp -d "/tmp/dagq-pg$major-XXXXXX")"
exec 9>"$tmp/owner.lock"
flock 9
cleanup() {
    pg "$bin/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
# Ctrl-C reaches the command too (same process group); once it has ended, stop here
# with the usual status (the EXIT trap then removes the cluster).
trap 'exit 130' INT
trap 'exit 143' TERM
# The directory itself and its lock stay the caller's; the server's user owns only what
# the server writes (its data, socket and log).
mkdir "$tmp/run" "$tmp/data" "$tmp/log"
[ "${#as_user[@]}" = 0 ] || chown "$user:" "$tmp/run" "$tmp/data" "$tmp/log"
chmod 711 "$tmp"
pg "$bin/initdb" -D "$tmp/data" --auth=trust --encoding=UTF8 --locale=C \
    -U postgres --no-sync --no-instructions >"$tmp/initdb.log" 2>&1 \
    || { cat "$tmp/initdb.log" >&2; exit 1; }
# Socket only (listen_addresses ''), in a directory of its own: no port to collide with
# another server. max_connections covers two pytest-xdist workers, which share this one
# server (the embedded one gives each its own server with 300); fsync off: a test
# cluster need not survive a power cut. The rest are PostgreSQL's defaults, so the
# planner sees what a stock server gives it.
pg "$bin/pg_ctl" -D "$tmp/data" -l "$tmp/log/server.log" -w -t 60 \
    -o "-k $tmp/run -p 5432 -c listen_addresses= -c max_connections=600 \
        -c shared_buffers=256MB -c fsync=off" start >/dev/null \
    || { cat "$tmp/log/server.log" >&2; exit 1; }
export DAGQ_TEST_DATABASE_URL="postgresql://postgres@/postgres?host=$tmp/run&port=5432"
echo "dagq: tests run on $("$bin/postgres" --version) (a throwaway cluster in $tmp)" >&2
status=0
"$@" || status=$?
exit "$status"
