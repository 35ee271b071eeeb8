"""`dagq tenants set`'s cost options (docs/cost.md), apart from dagq.cli.parser (at its size
limit); the values are read by the tenants command (dagq.cli.commands)."""

from __future__ import annotations

import argparse


def add_cost_options(tenant_set: argparse.ArgumentParser) -> None:
    """`tenants set`'s cost options (docs/cost.md): unlike the quotas, left out is kept."""
    tenant_set.add_argument("--daily-cost-usd", default=None, metavar="USD",
                            help="daily budget (UTC days; 'none' removes it; left out: kept)")
    tenant_set.add_argument("--prices", default=None, metavar="JSON",
                            help='model prices, e.g. \'{"gpt-4o-mini": {"input_usd_per_mtok": '
                                 '0.15, "output_usd_per_mtok": 0.6}}\' (left out: kept)')
