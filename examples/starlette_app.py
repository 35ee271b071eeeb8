"""A Starlette app that submits one dagq run per request and streams the run's events back
to the browser as Server-Sent Events, with dagq.AsyncClient.

    DAGQ_URL=http://127.0.0.1:8000 DAGQ_API_KEY=<key> python examples/starlette_app.py
    # then open http://127.0.0.1:8001/

`GET /ask?question=...&request_id=...` submits a run of support-answer.json with the
event key `ask:<request_id>`, so a browser that reconnects (EventSource does so by
itself) gets the same run, not a second one, and its `Last-Event-ID` resumes the stream
right after the last event it saw. The stream ends with an `event: done` carrying the
finished run's status and outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dagq import AsyncClient
from dagq.errors import ApiError
from dagq.models import RunEvent

WORKFLOW = json.loads((Path(__file__).with_name("support-answer.json")).read_text())

PAGE = """<!doctype html>
<meta charset="utf-8"><title>dagq: ask</title>
<style>body{font:15px system-ui;margin:2em;max-width:50em} li{font-family:monospace}</style>
<h1>Ask</h1>
<form id="ask"><input name="question" size="50" value="Why was I charged twice?" required>
<button>Ask</button></form>
<p id="status"></p><ol id="events"></ol><pre id="answer"></pre>
<script>
document.getElementById("ask").onsubmit = (e) => {
  e.preventDefault();
  const question = new FormData(e.target).get("question");
  const list = document.getElementById("events"), status = document.getElementById("status");
  list.innerHTML = ""; document.getElementById("answer").textContent = "";
  const url = "/ask?" + new URLSearchParams({question, request_id: crypto.randomUUID()});
  const source = new EventSource(url);
  status.textContent = "running…";
  source.onmessage = (m) => {               // one per run event
    const ev = JSON.parse(m.data), li = document.createElement("li");
    li.textContent = `${ev.type}${ev.node_key ? " " + ev.node_key : ""}`;
    list.appendChild(li);
  };
  source.addEventListener("done", (m) => {  // the run finished: stop reconnecting
    source.close();
    const run = JSON.parse(m.data);
    status.textContent = run.status;
    document.getElementById("answer").textContent = JSON.stringify(run.outputs, null, 2);
  });
  source.onerror = () => { status.textContent = "reconnecting…"; };
};
</script>
"""


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def ask(request: Request) -> Response:
    question = request.query_params.get("question", "").strip()
    request_id = request.query_params.get("request_id", "").strip()
    if not question or not request_id:
        return JSONResponse({"error": "question and request_id are required"}, 400)
    dagq: AsyncClient = request.app.state.dagq
    try:  # the same request_id again (a reconnect) finds the same run
        submitted = await dagq.submit(WORKFLOW, {"question": question},
                                      event_key=f"ask:{request_id}")
    except ApiError as exc:
        return JSONResponse({"error": exc.message, "code": exc.code},
                            status_code=exc.status or 502)
    resume_after = request.headers.get("last-event-id") or None
    return EventSourceResponse(relay(dagq, submitted.run_id, resume_after))


async def relay(dagq: AsyncClient, run_id: object,
                after: str | None) -> AsyncIterator[ServerSentEvent]:
    """The run's events as they happen (after `after`), then `done` with the result."""
    async with contextlib.aclosing(dagq.events(run_id, after=after)) as events:
        async for event in events:
            if isinstance(event, RunEvent):  # (other kinds may come from newer servers)
                yield ServerSentEvent(data=event.model_dump_json(), id=str(event.id))
    run = await dagq.run(run_id)
    result = run.model_dump(mode="json", include={"run_id", "status", "outputs", "error"})
    yield ServerSentEvent(data=json.dumps(result), event="done")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with AsyncClient() as dagq:  # DAGQ_URL, DAGQ_API_KEY
        app.state.dagq = dagq
        yield


app = Starlette(routes=[Route("/", index), Route("/ask", ask)], lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    options = parser.parse_args()
    uvicorn.run(app, host=options.host, port=options.port)
