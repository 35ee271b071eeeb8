#!/usr/bin/env python3
"""Render exported spans as a static trace waterfall: one self-contained HTML page with an
inline SVG (no script, no CDN), as docs/observability.md shows one run's trace.

    python scripts/trace_waterfall.py spans.json -o waterfall.html [--title TEXT]

`spans.json` is a list of spans as tests/harness/otlp.py decodes them from OTLP/HTTP
(name, service, trace_id, span_id, parent_span_id, start_ns, end_ns, attributes,
status {code: 2 = error}, links); the spans of the first trace found, or of `--trace`.
Rows are in tree order (a span under its parent, siblings by start); a bar is the span's
time, red when it failed, hatched when dagq recorded a reclaimed attempt for a dead
worker, after a thin grey bar for its queue wait; a linked retry names the attempt it
follows.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Any

ROW_H, LABEL_W, BAR_W, PAD = 26, 430, 640, 14
COLORS = {"dagq-api": "#6f42c1", "dagq-worker": "#1f77b4"}
ERROR, OTHER = "#d62728", "#2ca02c"


def tree_order(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) with each span after its parent, siblings by start time; spans whose
    parent is not among them (the caller's, outside this export) are roots."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        children.setdefault(parent if parent in ids else None, []).append(span)
    ordered: list[tuple[int, dict[str, Any]]] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s["start_ns"], s["name"])):
            ordered.append((depth, span))
            visit(span["span_id"], depth + 1)

    visit(None, 0)
    return ordered


def label(span: dict[str, Any]) -> str:
    attrs = span.get("attributes", {})
    text = span["name"]
    if "dagq.attempt" in attrs:
        text += f"  #{attrs['dagq.attempt']}"
    if attrs.get("dagq.reclaimed"):
        text += " (reclaimed)"
    for link in span.get("links", []):
        previous = link.get("attributes", {}).get("dagq.attempt")
        if previous is not None:
            text += f"  \u21bb after #{previous}"
    return text


def render(spans: list[dict[str, Any]], title: str) -> str:
    rows = tree_order(spans)
    start = min(s["start_ns"] for s in spans)
    end = max(s["end_ns"] for s in spans)
    scale = BAR_W / max(end - start, 1)
    height = PAD * 2 + 30 + ROW_H * len(rows)
    width = LABEL_W + BAR_W + 150
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
             '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4b6b6"/>'
             '<line x1="0" y1="0" x2="0" y2="6" stroke="#d62728" stroke-width="3"/>'
             '</pattern></defs>',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    total_ms = (end - start) / 1e6
    for i in range(6):  # the time axis
        x = LABEL_W + BAR_W * i / 5
        parts.append(f'<line x1="{x:.1f}" y1="{PAD + 18}" x2="{x:.1f}" y2="{height - PAD}" '
                     'stroke="#e3e3e3"/>')
        parts.append(f'<text x="{x:.1f}" y="{PAD + 10}" text-anchor="middle" fill="#555">'
                     f'{total_ms * i / 5:.0f} ms</text>')
    for row, (depth, span) in enumerate(rows):
        y = PAD + 30 + row * ROW_H
        failed = span.get("status", {}).get("code") == 2
        reclaimed = span.get("attributes", {}).get("dagq.reclaimed")
        fill = "url(#hatch)" if reclaimed else ERROR if failed else \
            COLORS.get(span.get("service") or "", OTHER)
        x = LABEL_W + (span["start_ns"] - start) * scale
        w = max((span["end_ns"] - span["start_ns"]) * scale, 2)
        ms = (span["end_ns"] - span["start_ns"]) / 1e6
        wait_ms = span.get("attributes", {}).get("dagq.queue_wait_ms")
        if wait_ms:  # the time the node waited in its queue before this attempt
            wx = max(x - wait_ms * 1e6 * scale, LABEL_W)
            parts.append(f'<rect x="{wx:.1f}" y="{y + 10}" width="{x - wx:.1f}" '
                         f'height="{ROW_H - 20}" fill="#cfcfcf"/>')
        parts.append(f'<text x="{8 + depth * 16}" y="{y + 16}" fill="#222">'
                     f'{html.escape(label(span))}</text>')
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 16}" text-anchor="end" fill="#888">'
                     f'{html.escape(span.get("service") or "")}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}" '
                     f'rx="3" fill="{fill}"/>')
        parts.append(f'<text x="{x + w + 6:.1f}" y="{y + 16}" fill="#444">{ms:.1f} ms</text>')
    parts.append("</svg>")
    trace_id = spans[0]["trace_id"]
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{margin:16px;font-family:DejaVu Sans,Arial,sans-serif}"
            "h1{font-size:16px;margin:0 0 4px}p{color:#555;font-size:12px;margin:0 0 10px}"
            "</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>trace {trace_id} \u00b7 {len(spans)} spans \u00b7 "
            "purple: the API, blue: workers, red: failed, hatched: reclaimed "
            "(its worker died), grey: waiting in the queue</p>"
            + "".join(parts) + "</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spans", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--trace", default=None, help="the trace id (default: the first)")
    parser.add_argument("--title", default="One dagq run's trace")
    args = parser.parse_args(argv)
    spans = json.loads(args.spans.read_text())
    if not spans:
        print("no spans", file=sys.stderr)
        return 1
    trace_id = args.trace or spans[0]["trace_id"]
    args.out.write_text(render([s for s in spans if s["trace_id"] == trace_id], args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
