"""examples/research.json and examples/summarize.json written in Python (`dagq.Workflow`):
`to_spec()` gives the same specs, so registering either form makes the same version.

    from dagq import Client
    from examples.research_workflow import research, summarize

    with Client() as client:                 # DAGQ_URL, DAGQ_API_KEY (an admin key)
        client.register_workflow(summarize)  # the sub-workflow first
        client.register_workflow(research)
        client.submit("research", inputs={"limit": 6})

The executors are in examples/research_executors.py.
"""

from __future__ import annotations

from dagq import Workflow

# One document (a child run's `payload["run"]["item"]`): clean -> summarize -> score.
summarize = Workflow("summarize")
clean = summarize.node("clean", "research.clean")
summary = summarize.node("summarize", "research.summarize", after=[clean], max_attempts=1)
summarize.node("score", "research.score", after=[summary])

# Retrieve documents, run `summarize` as a child run per document (5 at a time), then
# aggregate. `over=` reads the list at `documents` in retrieve's outputs and makes the
# edge retrieve -> summaries; a failed child fails the map node (no retry).
research = Workflow("research")
docs = research.node("retrieve", "research.retrieve")
summaries = research.map("summaries", over=docs.output("documents"), workflow=summarize,
                         max_parallel=5, max_attempts=1)
research.node("aggregate", "research.aggregate", after=[summaries])
