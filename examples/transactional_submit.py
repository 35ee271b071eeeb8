"""A run that exists if and only if the business write commits (docs/triggers.md,
"Submitting inside your transaction"): an order is inserted and its invoice run
submitted in one transaction of the application's own connection, with
`dagq.submit_in`; or, without Python, by a trigger calling the SQL function
`dagq.submit`. The workflow `invoice` must be registered (INVOICE below).

    import psycopg
    from examples.transactional_submit import place_order

    with psycopg.connect(DATABASE_URL) as conn:   # the database dagq uses
        run = place_order(conn, order_id=7, total_cents=4200)
    # committed: the run exists and the workers were woken; had the insert failed,
    # neither the order nor the run would exist.
"""

from __future__ import annotations

from typing import Any

import psycopg

import dagq
from dagq.models import SubmitResult

INVOICE: dict[str, Any] = {
    "name": "invoice",
    "nodes": {"render": {"executor": "builtin.echo"},
              "send": {"executor": "builtin.noop", "depends_on": ["render"]}},
}
# The application's own table (in its own schema; dagq's is `dagq`).
CREATE_ORDERS = "CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, total_cents int)"
# The same from SQL alone: each new order submits its invoice run in the inserting
# transaction (the sweeper turns the request into the run within about a second).
CREATE_TRIGGER = """
CREATE OR REPLACE FUNCTION order_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dagq.submit('invoice', jsonb_build_object('order', NEW.id),
                        event_key => 'order-' || NEW.id || '-invoice');
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER orders_invoice AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION order_invoice();
"""


def place_order(conn: psycopg.Connection[Any], order_id: int,
                total_cents: int) -> SubmitResult:
    """Insert the order and submit its invoice run in one transaction, committed here.
    A refusal (dagq.errors) raises before anything of dagq's is written, and the `with`
    rolls the order back with it."""
    with conn.transaction():
        conn.execute("INSERT INTO orders (id, total_cents) VALUES (%s, %s)",
                     (order_id, total_cents))
        return dagq.submit_in(conn, "invoice", inputs={"order": order_id,
                                                       "total_cents": total_cents},
                              event_key=f"order-{order_id}-invoice",
                              metadata={"order": str(order_id)})
