"""Issue 17's example end to end on real processes: `examples/research.json` maps the
"summarize one document" sub-workflow over the retrieved documents, 5 child runs at a
time; one document makes its child fail, so the run fails; it is rerun from the map node
with a patched upstream output (`retrieve`) through the CLI in client mode (the API), and
succeeds without running `retrieve` again."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from dagq import Client, service
from dagq.store import Store
from tests.harness.e2e import cli, registered, start_api
from tests.harness.procs import ROOT, WorkerFleet, wait_for_run

DOCS = [{"id": f"d{i}", "text": f"document number {i} says something useful"}
        for i in range(7)]


def test_research_fails_on_one_document_and_a_patched_rerun_succeeds(
        fleet: WorkerFleet, repo: Store, sql, tmp_path: Path) -> None:
    url = start_api(fleet)
    fleet.start(threads=4, DAGQ_ACTOR_MODULES="examples.research_executors")
    registered(sql, "research.summarize")
    key = service.create_api_key(repo, "acme", admin=True)
    with Client(url, api_key=key) as client:
        for name in ("summarize", "research"):
            client.register_workflow(ROOT / "examples" / f"{name}.json")
        bad = [*DOCS[:3], {"id": "bad", "text": "FAIL: a page the model refuses"}, *DOCS[3:]]
        failed = client.submit("research", inputs={"documents": bad}).run_id
        run = wait_for_run(repo, failed, timeout=120)
        assert run.status == "failed", run
        children = client.run(failed).children or []
        assert children and {c.node_key for c in children} == {"summaries"}
        assert "failed" in {c.status for c in children}

    patched = {"retrieve": {"query": "", "documents": DOCS}}
    done = cli(tmp_path, url, key, "run", "rerun", str(failed), "--from", "summaries",
               "--outputs", json.dumps(patched))
    assert done.returncode == 0, done.stderr
    again = uuid.UUID(done.stdout.strip().splitlines()[-1])
    run = wait_for_run(repo, again, timeout=120)
    assert run.status == "succeeded", run
    nodes = {n.key: n for n in run.nodes}
    assert nodes["aggregate"].outputs["documents"] == len(DOCS)
    assert len(nodes["aggregate"].outputs["digest"]) == len(DOCS)
    # retrieve was copied with the patched output, never executed in the rerun
    starts = sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE run_id = %s "
                         "AND node_key = 'retrieve' AND type = 'node_started'",
                         (again,)).fetchone()["n"]
    assert starts == 0 and nodes["retrieve"].outputs == patched["retrieve"]
    assert sql.execute("SELECT rerun_of FROM dagq.runs WHERE id = %s",
                       (again,)).fetchone()["rerun_of"] == failed
    # the children of the rerun: one per document, never more than 5 open at once
    kids = sql.execute("SELECT started_at, finished_at FROM dagq.runs "
                       "WHERE parent_run_id = %s", (again,)).fetchall()
    assert len(kids) == len(DOCS)
    for kid in kids:
        open_then = sum(1 for k in kids
                        if k["started_at"] <= kid["started_at"] < (k["finished_at"]))
        assert open_then <= 5
