"""dagq's SQL as package data: `queries.sql`, `bench.sql` and `migrations/NNN_*.sql`,
read by `dagq.sqlfiles` through importlib.resources (so an installed wheel finds them)."""
