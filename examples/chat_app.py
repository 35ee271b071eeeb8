"""A chat page whose answer appears token by token, through dagq alone: each question is
a run of examples/chat.json; the page reads the `llm` node's streamed text from the app,
which follows it with `dagq.AsyncClient.stream_text` (no Redis, no second channel).

    DAGQ_ACTOR_MODULES=examples.chat_executors ./scripts/run      # dagq, in one terminal
    DAGQ_URL=http://127.0.0.1:8000 DAGQ_API_KEY=<key> python examples/chat_app.py
    # then open http://127.0.0.1:8002/

`GET /chat?question=...&request_id=...` submits the run with the event key
`chat:<request_id>` (a reconnecting browser gets the same run), then sends
`event: token` per piece of text, `event: reset` when a retried attempt starts over,
and `event: done` with the run's status and answer.
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

WORKFLOW = json.loads((Path(__file__).with_name("chat.json")).read_text())

PAGE = """<!doctype html>
<meta charset="utf-8"><title>dagq: chat</title>
<style>body{font:15px system-ui;margin:2em;max-width:50em} #answer{white-space:pre-wrap}</style>
<h1>Chat</h1>
<form id="ask"><input name="question" size="50" value="Why was I charged twice?" required>
<button>Send</button></form>
<p id="status"></p><div id="answer"></div>
<script>
document.getElementById("ask").onsubmit = (e) => {
  e.preventDefault();
  const question = new FormData(e.target).get("question");
  const answer = document.getElementById("answer"), status = document.getElementById("status");
  answer.textContent = "";
  const url = "/chat?" + new URLSearchParams({question, request_id: crypto.randomUUID()});
  const source = new EventSource(url);
  status.textContent = "thinking…";
  source.addEventListener("token", (m) => { answer.textContent += JSON.parse(m.data); });
  source.addEventListener("reset", () => { answer.textContent = ""; });
  source.addEventListener("done", (m) => {
    source.close();
    status.textContent = JSON.parse(m.data).status;
  });
};
</script>
"""


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def chat(request: Request) -> Response:
    question = request.query_params.get("question", "").strip()
    request_id = request.query_params.get("request_id", "").strip()
    if not question or not request_id:
        return JSONResponse({"error": "question and request_id are required"}, 400)
    dagq: AsyncClient = request.app.state.dagq
    try:
        submitted = await dagq.submit(WORKFLOW, {"question": question},
                                      event_key=f"chat:{request_id}")
    except ApiError as exc:
        return JSONResponse({"error": exc.message, "code": exc.code},
                            status_code=exc.status or 502)
    return EventSourceResponse(tokens(dagq, submitted.run_id))


async def tokens(dagq: AsyncClient, run_id: object) -> AsyncIterator[ServerSentEvent]:
    """The llm node's text as it is written (from its start: a reconnecting browser
    is told to clear what it has first), then the run's result."""
    yield ServerSentEvent(data="{}", event="reset")
    async with contextlib.aclosing(dagq.stream_text(run_id, "llm")) as pieces:
        async for piece in pieces:
            if piece.reset:  # a retried attempt streams from the start
                yield ServerSentEvent(data="{}", event="reset")
            yield ServerSentEvent(data=json.dumps(str(piece)), event="token")
    run = await dagq.wait(run_id, timeout_s=300)
    answer = (run.outputs or {}).get("answer", {}).get("answer")
    yield ServerSentEvent(data=json.dumps({"status": run.status, "answer": answer}),
                          event="done")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with AsyncClient() as dagq:  # DAGQ_URL, DAGQ_API_KEY
        app.state.dagq = dagq
        yield


app = Starlette(routes=[Route("/", index), Route("/chat", chat)], lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    options = parser.parse_args()
    uvicorn.run(app, host=options.host, port=options.port)
