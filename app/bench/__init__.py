"""`dagq bench`: the benchmark, a subpackage of its own.

Only `dagq bench` imports its modules (`dagq.bench.args` builds the command line and
imports nothing else): `args` the options, `run` the sizes, the sequence and the
repetitions, `phases` one function per measurement, `fleet` the worker processes,
`machine` the scratch database and the facts recorded beside the figures, `report` the
printed table, `compare` `--compare REF`. docs/performance.md explains the figures.
"""
