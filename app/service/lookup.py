"""Run ids as people type them: a whole UUID, or a unique prefix of one (at least
MIN_PREFIX hex digits, dashes optional) as `dagq runs` shows them. The text is checked
here, before the CLI picks a backend; the matches come from the store (locally) or from
GET /v1/runs?id_prefix= (remotely), and `one_match` turns them into one id alike."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from dagq.errors import InvalidRequest, NotFound
from dagq.store import Store

MIN_PREFIX = 4
MAX_MATCHES = 10  # an ambiguous prefix lists at most this many runs
_HEX = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},31}}")


def parse_run_ref(text: str, what: str = "run") -> uuid.UUID | str:
    """A UUID, or the normalised prefix (lowercase hex, no dashes); else InvalidRequest."""
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    prefix = text.strip().lower().replace("-", "")
    if not _HEX.fullmatch(prefix):
        raise InvalidRequest(f"{text[:100]!r} is not a {what} id (a UUID, or a unique "
                             f"prefix of at least {MIN_PREFIX} hex digits)")
    return prefix


def check_prefix(text: str) -> str:
    """GET /v1/runs?id_prefix=: the normalised prefix, or InvalidRequest."""
    ref = parse_run_ref(text)
    return ref.hex if isinstance(ref, uuid.UUID) else ref


def one_match(prefix: str, matches: Sequence[uuid.UUID]) -> uuid.UUID:
    """The one run id `prefix` names among `matches` (at most MAX_MATCHES + 1 of them):
    NotFound for none, InvalidRequest listing them for more than one."""
    if not matches:
        raise NotFound(f"no run id starts with {prefix!r}: run not found")
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(str(m) for m in matches[:MAX_MATCHES])
    more = " and more" if len(matches) > MAX_MATCHES else ""
    raise InvalidRequest(f"run id prefix {prefix!r} is ambiguous: it matches {shown}{more}",
                         {"matches": [str(m) for m in matches[:MAX_MATCHES]]})


def resolve_run_id(repo: Store, ref: uuid.UUID | str, tenant: str | None) -> uuid.UUID:
    """The run id `ref` (parse_run_ref's answer) names, among `tenant`'s runs."""
    if isinstance(ref, uuid.UUID):
        return ref
    found = repo.runs.runs_by_id_prefix(ref, tenant, limit=MAX_MATCHES + 1)
    return one_match(ref, [run.run_id for run in found])
