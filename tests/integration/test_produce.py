"""The two producers on a real broker: every record arrives once, keyed by session, in its topic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.reliability.test_operator_input import isolated_env
from website_activity.adapters.topics import create_topics
from website_activity.core.catalog import ground_truth_path, produce_manifest_path
from website_activity.devtools.broker import free_port
from website_activity.simulate.generator import FAULT_KINDS, EventGenerator
from website_activity.stages.produce import run_produce, split_events

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def consume_all(settings, expected: int) -> dict[str, list]:
    """Every record of the run's topics: {topic: [(partition, key, value), ...]} in partition order."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                             consumer_timeout_ms=5000, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(t, p) for t in settings.topics for p in sorted(consumer.partitions_for_topic(t))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: dict[str, list] = defaultdict(list)
        deadline = time.monotonic() + 60
        n = 0
        while n < expected and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=1000, max_records=50000).items():
                out[tp.topic] += [(tp.partition, m.key, m.value) for m in batch]
                n += len(batch)
        # nothing more than expected is there
        assert not consumer.poll(timeout_ms=2000)
        return out
    finally:
        consumer.close()


def test_produce_n_consume_n_plus_the_faults(kafka_settings) -> None:
    s = kafka_settings
    create_topics(s)
    n, seed = 4001, 3
    run = run_produce(s, n, seed)
    m = json.loads(produce_manifest_path(s).read_text())
    assert m == run.manifest
    extra = sum(m["faults"][k] for k in FAULT_KINDS if k != "late")  # late events are among the n
    assert m["faults"]["duplicate"] > 0 and extra > m["faults"]["duplicate"]  # the defaults inject faults
    assert (m["events"], m["records"], m["sent"], m["failed"]) == (n, n + extra, n + extra, 0)
    assert [t["events"] for t in m["topics"]] == split_events(n, 2)

    got = consume_all(s, m["records"])
    assert sum(len(v) for v in got.values()) == n + extra
    for topic, share in zip(s.topics, split_events(n, 2)):
        records = got[topic]
        # exactly the generator's records for this topic, byte for byte (same seed, same config)
        expected = list(EventGenerator.from_settings(s, seed, topic, events=share).records(share))
        assert Counter((k, v) for _, k, v in records) == Counter(expected)
        per_topic = next(t for t in m["topics"] if t["topic"] == topic)
        assert per_topic["records"] == len(records) == per_topic["sent"]
        # key = session_id: a session's records share one partition and keep their order there
        partition_of = {}
        for partition, key, value in records:
            assert partition_of.setdefault(key, partition) == partition
        valid = [(key, json.loads(v)) for _, key, v in records if _valid(v)]
        assert len(valid) >= split_events(n, 2)[0] - 1
        assert all(key.decode() == e["session_id"] for key, e in valid)
        # the ground truth of this topic: one row per session, never in Kafka
        truth = pq.read_table(ground_truth_path(s, topic))
        sessions = {e["session_id"] for _, e in valid}
        assert set(truth.column("session_id").to_pylist()) == sessions
    # a session stays in one topic: the producers' users are disjoint
    keys = [{k for _, k, _ in got[t]} for t in s.topics]
    assert keys[0].isdisjoint(keys[1])
    assert sum(m["faults"][k] for k in ("duplicate",)) == sum(
        c - 1 for t in s.topics for c in Counter(v for _, _, v in got[t]).values())


def _valid(value: bytes) -> bool:
    """A well-formed event (the malformed kinds are all told apart by these checks)."""
    if len(value) > 65536:
        return False
    try:
        e = json.loads(value)
    except ValueError:
        return False
    return (isinstance(e, dict) and len(e) == 12 and isinstance(e["click_coordinates_x"], int)
            and isinstance(e["click_coordinates_y"], int) and e["device_type"] in ("desktop", "tablet", "mobile"))


def test_timed_and_rate_limited_modes(kafka_settings) -> None:
    s = kafka_settings
    create_topics(s)
    run = run_produce(s, None, 5, duration=2.0, rate=400.0)
    m = run.manifest
    assert m["events"] > 0 and m["sent"] == m["records"] and m["failed"] == 0
    assert m["options"]["duration"] == 2.0 and m["options"]["rate"] == 400.0
    got = consume_all(s, m["records"])
    assert sum(len(v) for v in got.values()) == m["records"]


def run_script(out: Path, *args: str) -> subprocess.CompletedProcess:
    # every output under ``out``: produce creates its folders before it checks all of its options,
    # and the checkout's data/ is the user's (test_bench checks that no test touched it)
    env = isolated_env(out)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "produce.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (("--rate", "0"), "Invalid value for '--rate'"),
    (("--rate", "-5"), "Invalid value for '--rate'"),
    (("--duration", "0"), "Invalid value for '--duration'"),
    (("--events", "-1"), "Invalid value for '--events'"),
    (("--colour", "red"), "No such option '--colour'"),
    (("--start", "yesterday"), "start time 'yesterday' is not 'now' nor an ISO-8601 instant"),
])
def test_bad_options_are_refused_in_one_line(args, message, tmp_path) -> None:
    proc = run_script(tmp_path, "--port", str(free_port()), *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
