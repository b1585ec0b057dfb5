"""Broker loss while producing: the only broker is SIGKILLed mid-produce and restarted on the same
storage. The producers (idempotent, acks=all, retried within delivery_timeout) finish with every
record acknowledged; ingest then reads exactly what the manifest says was sent: 0 events lost,
none twice. The broker is this module's own (it is killed); only it is killed, by its pid."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.reliability.test_operator_input import isolated_env
from website_activity.adapters.lake import read_table
from website_activity.adapters.topics import create_topics
from website_activity.devtools.broker import EmbeddedBroker, free_port
from website_activity.stages.ingest import run_ingest

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]
EVENTS = 8000
MALFORMED = ("not_json", "truncated_json", "missing_field", "wrong_type", "unknown_enum", "out_of_viewport",
             "oversize")


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory, settings):
    b = EmbeddedBroker(home=tmp_path_factory.mktemp("lossy-broker"), jvm_dir=settings.path("jvm") / "broker",
                       port=free_port(), controller_port=free_port(), heap="384m")
    b.start()
    yield b
    b.stop()
    assert b.pid() is None


def end_offsets(bootstrap: str, topics: list[str]) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def test_sigkill_the_broker_mid_produce_then_restart_loses_nothing(own_broker, spark, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    s = make_settings(tmp_path, kafka__port=own_broker.port, kafka__controller_port=own_broker.controller_port,
                      topics__names=[f"l-{tag}", f"m-{tag}"])
    create_topics(s)
    env = isolated_env(tmp_path, WA__KAFKA__PORT=str(own_broker.port),
                       WA__KAFKA__CONTROLLER_PORT=str(own_broker.controller_port),
                       WA__TOPICS__NAMES=json.dumps(s.topics))
    log = tmp_path / "produce.log"
    # rate-limited, so the producers are mid-stream when the broker dies (about 5 s of sending)
    producing = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "produce.py"), "--events", str(EVENTS),
                                  "--seed", "5", "--rate", "1500"], cwd=ROOT, env=env, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while end_offsets(s.bootstrap_servers, s.topics) < EVENTS // 5:
            assert producing.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the producers sent nothing"
            time.sleep(0.2)
        assert producing.poll() is None and end_offsets(s.bootstrap_servers, s.topics) < EVENTS  # mid-stream
        assert own_broker.kill()  # SIGKILL: no clean shutdown, in-flight requests lost
        time.sleep(2)  # the outage: the producers' sends fail and are retried meanwhile
        own_broker.start()  # same storage and ports
        assert producing.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if producing.poll() is None:
            producing.kill()
    manifest = json.loads((tmp_path / "runs" / "produce.json").read_text())
    assert manifest["failed"] == 0 and manifest["sent"] == manifest["records"] and manifest["events"] == EVENTS
    # the broker kept every acknowledged record, and retries wrote none twice (idempotent producer)
    assert end_offsets(s.bootstrap_servers, s.topics) == manifest["sent"]

    summary = run_ingest(spark, s).summary
    assert summary["reconciled"] and summary["records_read"] == manifest["sent"]
    assert summary["duplicates_removed"] == manifest["faults"]["duplicate"]  # only the injected ones
    assert summary["quarantined"] == sum(manifest["faults"][k] for k in MALFORMED)
    silver = read_table(spark, s, "silver")
    assert silver.count() == EVENTS == silver.select("event_id").distinct().count()  # 0 lost, none twice
