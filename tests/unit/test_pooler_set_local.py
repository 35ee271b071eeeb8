"""The statement that sets a pooled transaction's session limits (dagq.runtime.pooler.
set_local_statement) quotes names and values as SQL literals: composed, not formatted
into the text, so a value with a quote cannot end its literal."""

from __future__ import annotations

from dagq.runtime.pooler import set_local_statement


def test_values_are_quoted_as_literals() -> None:
    statement = set_local_statement([("statement_timeout", "60000"),
                                     ("application_name", "it's'); DROP TABLE x; --")])
    assert statement == (b"SELECT set_config('statement_timeout', '60000', true), "
                         b"set_config('application_name', 'it''s''); DROP TABLE x; --', true)")


def test_no_settings_is_no_statement() -> None:
    assert set_local_statement([]) == b""
