"""Executors of examples/research.json and examples/summarize.json: a "research" run
retrieves documents and maps the "summarize one document" sub-workflow (clean ->
summarize -> score) over them, 5 child runs at a time, then aggregates the summaries.

Each child run's inputs are what an executor in the map node's place would receive,
plus the item: `{"run", "deps", "params", "item", "index"}`; so inside `summarize`,
`payload["run"]["item"]` is the document. `research.summarize` fails for a document whose
text contains "FAIL" (a stand-in for a model refusing it): the child run fails, the map
node fails, and the research run with it (patch the retrieved documents and rerun).

    DAGQ_ACTOR_MODULES=examples.research_executors dagq up   # from the repository root
"""

from __future__ import annotations

from dagq import FatalError, executor

LIBRARY = [
    {"id": "d1", "text": "Postgres keeps every row version until vacuum removes it."},
    {"id": "d2", "text": "SKIP LOCKED lets many workers take different rows at once."},
    {"id": "d3", "text": "A partial index covers only the rows its predicate selects."},
    {"id": "d4", "text": "LISTEN and NOTIFY wake a waiting client without polling."},
    {"id": "d5", "text": "Group commit shares one WAL flush among many transactions."},
    {"id": "d6", "text": "Advisory locks are named by numbers the application picks."},
]


@executor("research.retrieve")
def retrieve(payload):
    """The documents to summarize: `inputs.documents` if given, else the library
    (`inputs.limit` of them)."""
    inputs = payload.get("run") or {}
    documents = inputs.get("documents") or LIBRARY[: int(inputs.get("limit", len(LIBRARY)))]
    return {"query": inputs.get("query", ""), "documents": documents}


def _document(payload):
    """The map item this child run was started for (its run inputs carry it)."""
    return (payload.get("run") or {}).get("item") or {}


@executor("research.clean")
def clean(payload):
    doc = _document(payload)
    return {"id": doc.get("id"), "text": " ".join(str(doc.get("text", "")).split())}


@executor("research.summarize")
def summarize(payload):
    doc = payload["deps"]["clean"]
    if "FAIL" in doc["text"]:
        raise FatalError(f"document {doc['id']} cannot be summarized")
    words = doc["text"].split()
    return {"id": doc["id"], "summary": " ".join(words[:6]) + ("…" if len(words) > 6 else "")}


@executor("research.score")
def score(payload):
    summary = payload["deps"]["summarize"]
    return {**summary, "score": round(len(summary["summary"]) / 50, 2)}


@executor("research.aggregate")
def aggregate(payload):
    """The map node's outputs: one child run's outputs per document, in order."""
    children = payload["deps"]["summaries"]
    items = [child["score"] for child in children if child is not None]
    return {"documents": len(children),
            "digest": [f"{item['id']}: {item['summary']}" for item in items]}
