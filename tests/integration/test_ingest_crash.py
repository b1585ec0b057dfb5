"""Crash test: `make stream`'s job (scripts/ingest.py --stream) in a subprocess, its Spark driver
SIGKILLed mid-stream at three different points, restarted; the lake must reconcile exactly, with
no event_id lost and none twice. Only the processes this test starts are killed, by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.conftest import make_settings
from tests.integration.test_ingest import produced
from website_activity.adapters.lake import committed_batches
from website_activity.adapters.topics import create_topics
from website_activity.core.catalog import ingest_ledger_dir, ingest_summary_path
from website_activity.simulate.generator import FAULT_KINDS
from website_activity.stages.produce import encode, run_produce

pytestmark = pytest.mark.integration

# The generator's own faults off: these tests send their own duplicates and poison and count them.
NO_FAULTS = {f"generator__faults__{kind}": 0.0 for kind in FAULT_KINDS}
ROOT = Path(__file__).resolve().parents[2]
EVENTS = 1500


def children(pid: int) -> list[int]:
    """The pids of a process's descendants (from /proc)."""
    out = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").glob("*"))
    except OSError:  # the process exited while its tasks were listed: no descendants left
        return out
    for task in tasks:
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *children(kid)]
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def env_for(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    for key in ("data", "bronze", "silver", "quarantine", "gold", "runs", "checkpoints", "validation"):
        env[f"WA__PATHS__{key.upper()}"] = str(settings.path(key))
    env.update(WA__KAFKA__PORT=str(settings["kafka"]["port"]), WA__TOPICS__NAMES=json.dumps(settings.topics),
               WA__SPARK__MAX_OFFSETS_PER_TRIGGER="250", WA__INGEST__TRIGGER_INTERVAL_S="0",
               WA__SPARK__DRIVER_MEMORY="768m", WA_ROOT=str(ROOT))
    return env


def start_stream(settings, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "ingest.py"), "--stream", *args],
                            cwd=ROOT, env=env_for(settings), stdout=log.open("a"), stderr=subprocess.STDOUT)


def sigkill_driver(proc: subprocess.Popen) -> None:
    """SIGKILL the Spark driver (the JVM the script started), then the script itself."""
    jvms = children(proc.pid)
    for pid in reversed(jvms):  # the driver JVM first: it must not write after the "crash"
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in jvms) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in jvms)


def ledger_ids(settings) -> set[int]:
    folder = ingest_ledger_dir(settings)
    return {int(p.stem) for p in folder.glob("[0-9]*.json")} if folder.is_dir() else set()


def batches_in(settings, table: str) -> set[int]:
    """The batch ids with a Delta commit in ``table``."""
    return committed_batches(settings.path(table))


def empty_batches(settings) -> set[int]:
    """Batches with no valid event (nothing for silver to commit)."""
    return {int(p.stem) for p in ingest_ledger_dir(settings).glob("[0-9]*.json")
            if json.loads(p.read_text())["records_read"] == json.loads(p.read_text())["quarantined"]}


def wait_for(predicate, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"ingest exited early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)


def test_sigkill_mid_stream_three_times_then_restart_loses_and_doubles_nothing(broker, tmp_path) -> None:
    s = make_settings(tmp_path, kafka__port=broker.port, kafka__controller_port=broker.controller_port,
                      topics__names=[f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"], **NO_FAULTS)
    create_topics(s)
    run_produce(s, EVENTS, seed=21)
    events = produced(s, EVENTS, seed=21)
    # duplicates re-sent on the topic of the original, and a few poison records
    dups = events[10:40]
    p = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
    for e in dups:
        p.send(s.topics[0], key=e["session_id"].encode(), value=encode(e))
    for i, value in enumerate([b"{broken", b'{"event_id": "x"}', b"[]"]):
        p.send(s.topics[1], key=str(i).encode(), value=value)
    p.flush()
    p.close()
    records = EVENTS + len(dups) + 3

    log = tmp_path / "ingest.log"
    points = []
    # 1. mid-batch: a batch's bronze commit is in, its silver not yet (no ledger entry)
    proc = start_stream(s, log)
    wait_for(lambda: bool(batches_in(s, "bronze") - batches_in(s, "silver")) and len(ledger_ids(s)) >= 1, proc, log)
    sigkill_driver(proc)
    points.append(("after bronze, before silver", sorted(batches_in(s, "bronze") - batches_in(s, "silver"))))
    # 2. right after silver's commit of a batch, before its gold and ledger entry
    proc = start_stream(s, log)
    before = len(ledger_ids(s))
    wait_for(lambda: bool(batches_in(s, "silver") - ledger_ids(s)) and len(ledger_ids(s)) > before, proc, log)
    sigkill_driver(proc)
    points.append(("after silver's commit", len(ledger_ids(s))))
    # 3. right after a batch completed, before (or while) Spark commits it to the checkpoint
    proc = start_stream(s, log)
    before = ledger_ids(s)
    wait_for(lambda: len(ledger_ids(s) - before) >= 2, proc, log)
    sigkill_driver(proc)
    points.append(("after a batch's ledger entry", len(ledger_ids(s))))
    assert len(points) == 3 and points[0][1], points

    read_so_far = sum(json.loads(f.read_text())["records_read"] for f in ingest_ledger_dir(s).glob("[0-9]*.json"))
    assert 0 < read_so_far < records  # the kills happened mid-stream

    # restart: stream until everything is read, then SIGTERM: a clean stop after the last commit
    proc = start_stream(s, log)
    wait_for(lambda: sum(json.loads(f.read_text())["records_read"]
                         for f in ingest_ledger_dir(s).glob("[0-9]*.json")) >= records, proc, log, timeout=600)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "SIGTERM received" in log.read_text()

    summary = json.loads(ingest_summary_path(s).read_text())
    assert summary["reconciled"] is True
    assert (summary["records_read"], summary["silver"], summary["quarantined"], summary["duplicates_removed"]) == (
        records, EVENTS, 3, len(dups))
    assert summary["tables"]["bronze"]["rows"] == records
    from deltalake import DeltaTable

    silver_ids = DeltaTable(str(s.path("silver"))).to_pyarrow_table(columns=["event_id"]).column(
        "event_id").to_pylist()
    # zero lost, zero twice (read as Delta: files of a killed write are in no commit)
    assert len(silver_ids) == len(set(silver_ids)) == EVENTS
    assert set(silver_ids) == {e["event_id"] for e in events}
    assert batches_in(s, "silver") == batches_in(s, "bronze") - empty_batches(s)
