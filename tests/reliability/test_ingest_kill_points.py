"""Ingest killed at exact points of a micro-batch, chosen by a seed, and restarted each time.

`make ingest` (scripts/ingest.py) runs with ``WA_FAILPOINT=<point>@<n>``: the n-th time the job
passes ``point`` it SIGKILLs its Spark driver JVM and itself (website_activity.adapters.failpoints). The
points cover the checkpoint and the Delta commits of a batch:

* ``batch.start``: Spark has logged the batch's offsets in the checkpoint, nothing is written;
* ``bronze.committed``: bronze's commit of the batch is in (silver's, which runs alongside, may be);
* ``silver.before_commit``: silver's write (then gold's) not started, bronze's and quarantine's under way;
* ``silver.before_commit+0.4``: 0.4 s later, from a timer: in the middle of silver's write (its
  dedup against silver and its files) or of gold's after it;
* ``batch.committed``: every table committed, the ledger entry not written;
* ``batch.before_commit``: the batch is complete (ledger entry written) and Spark's commit to the
  checkpoint is not yet written: the restart replays it.

After the last kill a clean run must leave the exact equation, every event once and none twice.
Then ``make compact`` is killed in the middle of OPTIMIZE: it must lose nothing, and a second
compaction must finish. The existing tests/integration/test_ingest_crash.py kills `make stream`
by timing; this one by point."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.reliability.test_operator_input import isolated_env
from website_activity.adapters.lake import table_stats
from website_activity.adapters.topics import create_topics
from website_activity.core.catalog import ingest_ledger_dir, ingest_summary_path
from website_activity.stages.produce import run_produce

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]
SEED = 20261130
EVENTS = 1800
POINTS = ["batch.start", "bronze.committed", "silver.before_commit", "silver.before_commit+0.4", "batch.committed",
          "batch.before_commit"]
MALFORMED = ("not_json", "truncated_json", "missing_field", "wrong_type", "unknown_enum", "out_of_viewport",
             "oversize")


def ingest(env: dict[str, str], log: Path, failpoint: str | None = None, script: str = "ingest.py") -> int:
    run_env = dict(env, **({"WA_FAILPOINT": failpoint} if failpoint else {}))
    with log.open("a") as out:
        out.write(f"\n--- {script} {failpoint or '(no failpoint)'}\n")
        out.flush()
        started = time.monotonic()
        rc = subprocess.run([sys.executable, str(ROOT / "scripts" / script)], cwd=ROOT, env=run_env,
                            stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode
        out.write(f"--- exit {rc} after {time.monotonic() - started:.1f}s\n")  # where the test's time goes
        return rc


def silver_ids(settings) -> list[str]:
    """Silver's event ids, read as a Delta table by delta-rs (files of a killed write are in no commit)."""
    from deltalake import DeltaTable

    return DeltaTable(str(settings.path("silver"))).to_pyarrow_table(columns=["event_id"]).column(
        "event_id").to_pylist()


def batches_done(settings) -> int:
    return len(list(ingest_ledger_dir(settings).glob("[0-9]*.json"))) if ingest_ledger_dir(settings).is_dir() else 0


def test_seeded_kill_points_then_restart_lose_and_double_nothing(broker, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    s = make_settings(tmp_path, kafka__port=broker.port, kafka__controller_port=broker.controller_port,
                      topics__names=[f"k-{tag}", f"n-{tag}"])
    create_topics(s)
    manifest = run_produce(s, EVENTS, seed=8).manifest  # with the generator's duplicates and poison
    env = isolated_env(tmp_path, WA__KAFKA__PORT=str(broker.port), WA__TOPICS__NAMES=json.dumps(s.topics),
                       WA__KAFKA__CONTROLLER_PORT=str(broker.controller_port),
                       WA__SPARK__MAX_OFFSETS_PER_TRIGGER="150", WA__SPARK__DRIVER_MEMORY="768m")
    log = tmp_path / "ingest.log"
    rng = random.Random(SEED)
    kills = [(point, rng.randint(1, 2)) for point in POINTS]
    progress = []
    for point, nth in kills:
        name, _, delay = point.partition("+")
        rc = ingest(env, log, f"{name}@{nth}" + (f"+{delay}" if delay else ""))
        assert rc == -9, f"{point}@{nth}: exit {rc}, not killed there:\n{log.read_text()[-3000:]}"
        progress.append(batches_done(s))
    assert progress[-1] > 0  # the kills moved through the stream

    assert ingest(env, log) == 0, log.read_text()[-3000:]
    summary = json.loads(ingest_summary_path(s).read_text())
    assert summary["reconciled"] is True
    assert summary["records_read"] == manifest["sent"] == summary["tables"]["bronze"]["rows"]
    assert summary["duplicates_removed"] == manifest["faults"]["duplicate"]
    assert summary["quarantined"] == sum(manifest["faults"][k] for k in MALFORMED)
    ids = silver_ids(s)
    assert len(ids) == len(set(ids)) == EVENTS == summary["silver"]  # 0 lost, none twice

    # make compact killed while OPTIMIZE rewrites silver's small files: nothing lost, none twice
    before = table_stats(s.path("silver"))
    assert before["files"] >= 3  # a small file per batch
    assert ingest(env, log, "compact.optimize@2+1.0", script="compact.py") == -9
    assert sorted(silver_ids(s)) == sorted(ids)
    assert ingest(env, log, script="compact.py") == 0, log.read_text()[-3000:]
    after = table_stats(s.path("silver"))
    assert after["rows"] == before["rows"] and after["files"] < before["files"]
    assert sorted(silver_ids(s)) == sorted(ids)
