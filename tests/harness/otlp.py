"""A small OTLP/HTTP trace receiver for tracing tests: http.server on 127.0.0.1 in a thread,
taking `POST /v1/traces` (protobuf, as the OpenTelemetry exporter sends it), decoding
each ExportTraceServiceRequest with opentelemetry-proto into plain span dicts."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind is None:
        return None
    return getattr(v, kind)


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def decode(body: bytes) -> list[dict[str, Any]]:
    """The spans of one export request, flattened (ids as lowercase hex)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = _attrs(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append({
                    "service": resource.get("service.name"), "name": span.name,
                    "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "start_ns": span.start_time_unix_nano, "end_ns": span.end_time_unix_nano,
                    "kind": span.kind, "attributes": _attrs(span.attributes),
                    "status": {"code": span.status.code, "message": span.status.message},
                    "events": [{"name": e.name, "time_ns": e.time_unix_nano,
                                "attributes": _attrs(e.attributes)} for e in span.events],
                    "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                               "attributes": _attrs(link.attributes)} for link in span.links],
                })
    return spans


class OtlpReceiver:
    """`with OtlpReceiver() as r:` point OTEL_EXPORTER_OTLP_ENDPOINT at r.url; r.spans()."""

    def __init__(self) -> None:
        self._spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                found = decode(body) if self.path == "/v1/traces" else []
                with owner._lock:
                    owner._spans.extend(found)
                    owner.requests += 1
                # An empty ExportTraceServiceResponse: all accepted.
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
