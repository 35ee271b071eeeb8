"""Executors of examples/chat.json, a Dify-like chat workflow: retrieve -> llm -> answer.

`chat.llm` stands in for a model call: it writes its answer token by token with
`current_node().stream(...)`, as an LLM client's streaming callback would; the browser
sees each token as it is written (examples/chat_app.py). Swap its loop for your model
SDK's stream and keep the `node.stream(token)` line.

    DAGQ_ACTOR_MODULES=examples.chat_executors dagq up   # from the repository root
"""

from __future__ import annotations

import time

from dagq import FatalError, current_node, executor

DOCS = {
    "refund": "Refunds go back to the original card within 5 business days.",
    "charged twice": "A second charge is a pending authorisation; it drops off in 3 days.",
    "password": "Reset your password from the sign-in page with 'Forgot password'.",
}


@executor("chat.retrieve")
def retrieve(payload):
    question = str((payload.get("run") or {}).get("question", "")).strip()
    if not question:
        raise FatalError("the run needs inputs.question")
    hits = [text for topic, text in DOCS.items() if topic in question.lower()]
    return {"question": question, "documents": hits or list(DOCS.values())[:1]}


@executor("chat.llm", max_attempts=3, timeout_s=120)
def llm(payload):
    context = payload["deps"]["retrieve"]
    answer = f"You asked: {context['question']} " + " ".join(context["documents"])
    node = current_node()
    delay = float((payload.get("params") or {}).get("token_delay_s", 0.03))
    for n, token in enumerate(answer.split(" ")):
        node.stream(token + " ")                 # delivered live, stored, fenced by attempt
        if n % 10 == 9:
            node.stream(data={"tokens": n + 1})  # progress, as a JSON object
        time.sleep(delay)
    return {"answer": answer}
