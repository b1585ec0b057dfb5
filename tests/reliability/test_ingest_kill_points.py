"""Ingest killed at exact points of a micro-batch, chosen by a seed, and restarted each time.

`make ingest` (scripts/ingest.py) runs with ``WA_FAILPOINT=<point>@<n>``: the n-th time the job
passes ``point`` it SIGKILLs its Spark driver JVM and itself (website_activity.failpoints). The
points cover the checkpoint and the file writes of a batch:

* ``batch.start``: Spark has logged the batch's offsets in the checkpoint, nothing is written;
* ``bronze.staged`` / ``silver.staged``: the batch's Parquet files are written in the table's
  staging folder, none moved into the table;
* ``silver.moved``: the files are in the table, the batch's marker is not (``bronze.moved`` works
  the same way, left out for time);
* ``batch.before_commit``: the batch is complete (ledger entry written) and Spark's commit to the
  checkpoint is not yet written: the restart replays it.

After the last kill a clean run must leave the exact equation, every event once and none twice.
The existing tests/integration/test_ingest_crash.py kills `make stream` by timing; this one by
point."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.reliability.test_operator_input import isolated_env
from website_activity.ingest import ledger_dir, summary_path
from website_activity.produce import run_produce
from website_activity.topics import create_topics

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]
SEED = 20261130
EVENTS = 1800
POINTS = ["batch.start", "bronze.staged", "silver.staged", "silver.moved", "batch.before_commit"]
MALFORMED = ("not_json", "truncated_json", "missing_field", "wrong_type", "unknown_enum", "out_of_viewport",
             "oversize")


def ingest(env: dict[str, str], log: Path, failpoint: str | None = None) -> int:
    run_env = dict(env, **({"WA_FAILPOINT": failpoint} if failpoint else {}))
    with log.open("a") as out:
        out.write(f"\n--- ingest {failpoint or '(no failpoint)'}\n")
        out.flush()
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "ingest.py")], cwd=ROOT, env=run_env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode


def batches_done(settings) -> int:
    return len(list(ledger_dir(settings).glob("[0-9]*.json"))) if ledger_dir(settings).is_dir() else 0


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
        rc = ingest(env, log, f"{point}@{nth}")
        assert rc == -9, f"{point}@{nth}: exit {rc}, not killed there:\n{log.read_text()[-3000:]}"
        progress.append(batches_done(s))
    assert progress[-1] > 0  # the kills moved through the stream

    assert ingest(env, log) == 0, log.read_text()[-3000:]
    summary = json.loads(summary_path(s).read_text())
    assert summary["reconciled"] is True
    assert summary["records_read"] == manifest["sent"] == summary["tables"]["bronze"]["rows"]
    assert summary["duplicates_removed"] == manifest["faults"]["duplicate"]
    assert summary["quarantined"] == sum(manifest["faults"][k] for k in MALFORMED)
    import pyarrow.dataset as ds

    ids = ds.dataset(s.path("silver"), format="parquet", partitioning="hive").to_table(
        columns=["event_id"]).column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == EVENTS == summary["silver"]  # 0 lost, none twice
    assert not (s.path("silver") / "_staging").exists() and not (s.path("bronze") / "_staging").exists()
