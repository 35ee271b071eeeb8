"""The examples' executors (examples/chat_executors.py, examples/research_executors.py),
unit-tested as docs/testing.md shows a user: through dagq.testing's fake node, with no
worker and no database. tests/e2e/test_research_example.py and the chat app's tests run
them on real processes."""

from __future__ import annotations

from dagq.testing import node, run_executor
from examples import chat_executors, research_executors


def test_chat_retrieve_finds_the_documents_of_the_question() -> None:
    result = run_executor(chat_executors.retrieve, {"question": " charged twice? "})
    assert result.outcome == "succeeded"
    assert result.outputs == {"question": "charged twice?",
                              "documents": [chat_executors.DOCS["charged twice"]]}


def test_chat_retrieve_without_a_question_fails_at_once() -> None:
    result = run_executor("chat.retrieve", {"question": "  "}, attempt=1)
    assert result.outcome == "failed"
    assert result.error["message"] == "the run needs inputs.question"


def test_chat_llm_streams_its_answer_token_by_token_with_progress() -> None:
    context = {"question": "refund?", "documents": ["Refunds take 5 days."]}
    result = run_executor(chat_executors.llm, deps={"retrieve": context},
                          params={"token_delay_s": 0}, key="llm")
    assert result.outcome == "succeeded", result.error
    answer = "You asked: refund? Refunds take 5 days."
    assert result.outputs == {"answer": answer}
    assert result.text == "".join(token + " " for token in answer.split(" "))
    assert [c.text for c in result.chunks[:2]] == ["You ", "asked: "]
    assert result.data == []  # progress comes every 10 tokens: this answer has 6


def test_chat_llm_reports_progress_every_ten_tokens_and_is_retried_on_errors() -> None:
    context = {"question": " ".join(["word"] * 20), "documents": []}
    with node(deps={"retrieve": context}, params={"token_delay_s": 0}, key="llm") as fake:
        chat_executors.llm(fake.payload)
    assert fake.data == [{"tokens": 10}, {"tokens": 20}]
    missing = run_executor(chat_executors.llm, deps={}, params={"token_delay_s": 0})
    assert missing.outcome == "retry"  # a KeyError is not a FatalError: attempt 1 of 3
    assert missing.error["type"] == "KeyError"


def test_research_retrieve_takes_the_given_documents_or_the_library() -> None:
    given = [{"id": "x", "text": "t"}]
    assert run_executor(research_executors.retrieve, {"documents": given}).outputs == \
        {"query": "", "documents": given}
    limited = run_executor(research_executors.retrieve, {"limit": 2, "query": "q"}).outputs
    assert limited == {"query": "q", "documents": research_executors.LIBRARY[:2]}


def test_research_child_run_cleans_summarizes_and_scores_its_map_item() -> None:
    # A child run of the map gets the item in its run inputs (examples/research.json).
    item = {"id": "d9", "text": "  one two   three four five six seven  "}
    cleaned = run_executor(research_executors.clean, {"item": item}).outputs
    assert cleaned == {"id": "d9", "text": "one two three four five six seven"}
    summary = run_executor(research_executors.summarize, deps={"clean": cleaned}).outputs
    assert summary == {"id": "d9", "summary": "one two three four five six…"}
    scored = run_executor(research_executors.score, deps={"summarize": summary}).outputs
    assert scored == {**summary, "score": 0.56}
    digest = run_executor(research_executors.aggregate,
                          deps={"summaries": [{"score": scored}, None]}).outputs
    assert digest == {"documents": 2, "digest": ["d9: one two three four five six…"]}


def test_research_summarize_refuses_a_failing_document_without_retry() -> None:
    result = run_executor(research_executors.summarize,
                          deps={"clean": {"id": "bad", "text": "FAIL here"}})
    assert result.outcome == "failed"
    assert result.error == {**result.error, "type": "FatalError",
                            "message": "document bad cannot be summarized"}
