"""The `dagq bench` command line: cheap to import (the CLI builds every parser at start),
so it imports nothing of the benchmark itself."""

from __future__ import annotations

import argparse


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                        help="also write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run of every phase in seconds")
    parser.add_argument("--big", action="store_true",
                        help="also measure flat throughput with 1,000,000 finished node "
                             "rows in dagq.node_tasks and as many events in "
                             "dagq.run_events (100,000 with --quick)")
    parser.add_argument("--phase",
                        choices=["core", "dramatiq", "subflows", "fairness", "api", "bulk",
                                 "deliveries"],
                        default=None,
                        help="run only this phase (core: the hot path's figures, the "
                             "ceiling, flat and DAG drains and latency, a quarter of the "
                             "full bench's time; api: the front door under 50 and 200 "
                             "clients, in the bench's configuration and as `dagq up` "
                             "deploys it, alternating --repeat times; dramatiq: plain "
                             "Dramatiq actors' sends, "
                             "drain and idle send -> start; subflows: parent runs mapping a "
                             "sub-workflow, against the same work inlined; fairness: the "
                             "--fairness phase; bulk: a bulk cancel of 10,000 runs through "
                             "the API beside a flat drain (its time, the drain's stall), "
                             "and GET /v1/runs?meta.K=V over 1,000,000 runs (p50/p99); "
                             "deliveries: webhooks to a receiver inside "
                             "the bench, 10,000 run completions per drain: deliveries/s, "
                             "completion -> delivery, the drain with a subscription over "
                             "without)")
    parser.add_argument("--fairness", action="store_true",
                        help="also measure fair leasing: 100,000 one-node runs of one "
                             "tenant drain alone, then beside a small tenant submitting "
                             "one run every 50 ms (2,000 with --quick; a minute or two)")
    parser.add_argument("--via", choices=["pgbouncer", "proxy"], default=None,
                        help="also run the core phase's drains with the workers going "
                             "through PgBouncer (transaction mode; Debian's pgbouncer; "
                             "and submit -> start with DAGQ_LISTEN=off) or through a proxy "
                             "adding 5 ms each way, as ratios of the direct drains")
    parser.add_argument("--proxy-delay-ms", type=float, default=5.0, metavar="MS",
                        help="--via proxy: the delay each way (0: the proxy's own cost, "
                             "the floor the 5 ms figures stand on)")
    parser.add_argument("--compare", default=None, metavar="REF",
                        help="also bench the git commit REF (in a temporary worktree and "
                             "venv), alternating with this checkout, and print the ratios")
    parser.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="repetitions of each drain phase; the report shows their "
                             "median, min and max (3; 2 with --quick)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --compare: benches of each side, alternating (2)")
