"""Ingest on a real broker and a real SparkSession: a mixed stream of valid events, every poison
kind, duplicates and late events reconciles exactly; a second run adds no duplicates."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from kafka import KafkaProducer

from tests.conftest import make_settings
from tests.unit.test_ingest import poison
from website_activity.adapters.lake import read_table
from website_activity.adapters.topics import create_topics
from website_activity.core.catalog import ingest_summary_path
from website_activity.simulate.generator import FAULT_KINDS, EventGenerator
from website_activity.stages.ingest import gold_frame, ledger_entries, run_ingest
from website_activity.stages.produce import encode, run_produce, split_events

pytestmark = pytest.mark.integration

# The generator's own faults off: these tests send their own duplicates and poison and count them.
NO_FAULTS = {f"generator__faults__{kind}": 0.0 for kind in FAULT_KINDS}


def produced(settings, events: int, seed: int) -> list[dict]:
    out = []
    for topic, n in zip(settings.topics, split_events(events, len(settings.topics))):
        out += EventGenerator.from_settings(settings, seed, topic, events=n).events(n)  # the span follows the count, as in run_produce
    return out


def send(settings, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    p = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for topic, key, value in records:
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


def test_a_mixed_stream_reconciles_exactly_and_a_second_run_adds_no_duplicates(spark, broker, tmp_path) -> None:
    s = make_settings(tmp_path, kafka__port=broker.port, kafka__controller_port=broker.controller_port,
                      topics__names=[f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"],
                      spark__max_offsets_per_trigger=700, generator__span_h=0, ingest__gold_interval_s=3600,
                      **NO_FAULTS)
    # span_h 0: the stream's own pace (about an hour), so that only the events injected below are
    # behind the 30-minute watermark; a week in 2,000 events interleaves partitions by days.
    # Gold's interval of an hour: each batch leaves its windows pending, each run's end updates gold.
    create_topics(s)
    run_produce(s, 2000, seed=3)
    events = produced(s, 2000, seed=3)
    by_id = {e["event_id"]: e for e in events}
    topic_of = {e["event_id"]: t for t, n, off in [(s.topics[0], 1000, 0), (s.topics[1], 1000, 1000)]
                for e in events[off:off + n]}
    # duplicates: 25 events re-sent, same bytes, same key, same topic
    dups = events[100:125]
    # late: valid events two hours before every other event, sent last (a later micro-batch)
    start = datetime.fromisoformat(s["generator"]["start_time"])
    late = [dict(e, event_id=str(uuid.uuid4()), timestamp=(start - timedelta(hours=2)).isoformat())
            for e in events[:15]]
    bad = poison(s)
    send(s, [(topic_of[e["event_id"]], e["session_id"].encode(), encode(e)) for e in dups]
         + [(s.topics[i % 2], str(i).encode(), v) for i, (v, _) in enumerate(bad)]
         + [(s.topics[0], e["session_id"].encode(), encode(e)) for e in late])
    records = 2000 + len(dups) + len(bad) + len(late)

    first = run_ingest(spark, s)
    summary = json.loads(ingest_summary_path(s).read_text())
    assert first.batches >= 3 and summary == first.summary
    # the equation, exactly, from the ledger and from the tables
    assert (summary["records_read"], summary["silver"], summary["quarantined"], summary["duplicates_removed"]) == (
        records, 2000 + len(late), len(bad), len(dups))
    assert summary["reconciled"] is True
    assert summary["tables"]["bronze"]["rows"] == records and summary["tables"]["silver"]["rows"] == 2000 + len(late)
    expected_reasons: dict[str, int] = {}
    for _, reason in bad:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert summary["quarantine_by_reason"] == dict(sorted(expected_reasons.items()))
    # late events reach silver, flagged, and are the ones gold's watermark left out
    assert summary["late"] == len(late) and summary["gold_dropped_by_watermark"] == len(late)

    silver = read_table(spark, s, "silver")
    # silver's columns and types
    types = dict(silver.dtypes)
    assert {k: types[k] for k in ("timestamp", "click_coordinates_x", "click_coordinates_y", "event_date",
                                  "is_late", "offset", "partition", "topic", "ingest_time", "event_id")} == {
        "timestamp": "timestamp", "click_coordinates_x": "int", "click_coordinates_y": "int",
        "event_date": "date", "is_late": "boolean", "offset": "bigint", "partition": "int", "topic": "string",
        "ingest_time": "timestamp", "event_id": "string"}
    ids = [r.event_id for r in silver.select("event_id").collect()]
    # no event lost, none twice
    assert sorted(ids) == sorted(list(by_id) + [e["event_id"] for e in late])
    assert {r.event_id for r in silver.where("is_late").collect()} == {e["event_id"] for e in late}
    # duplicates kept their first record (the lowest offset)
    first_offsets = silver.where(silver.event_id.isin([e["event_id"] for e in dups])).select("offset").collect()
    assert max(r.offset for r in first_offsets) < 1000
    gold = read_table(spark, s, "gold")
    assert gold.agg({"events": "sum"}).first()[0] == 2000  # every event in time, none of the late ones
    entries = ledger_entries(s)  # the first batch created gold; the others left their windows to the run's end
    assert entries[0]["gold_pending"] == [] and all(e["gold_pending"] for e in entries[1:-1])
    assert entries[-1]["gold_pending"] == []
    bronze = read_table(spark, s, "bronze")
    assert bronze.count() == records and bronze.where("value is null").count() == 1
    quarantine = read_table(spark, s, "quarantine")
    assert quarantine.count() == len(bad) and quarantine.where("message is null").count() == 0

    # second run: new events, and old ones re-sent across runs: none of them twice in silver
    run_produce(s, 300, seed=4)
    new = produced(s, 300, seed=4)
    resent = events[500:520]
    send(s, [(topic_of[e["event_id"]], e["session_id"].encode(), encode(e)) for e in resent])
    second = run_ingest(spark, s)
    assert (second.input_rows, second.silver_rows, second.duplicates_removed) == (320, 300, 20)
    summary = json.loads(ingest_summary_path(s).read_text())
    assert summary["records_read"] == records + 320 and summary["duplicates_removed"] == len(dups) + 20
    assert summary["reconciled"] is True
    silver = read_table(spark, s, "silver")
    assert silver.count() == silver.select("event_id").distinct().count() == 2000 + len(late) + 300
    assert {e["event_id"] for e in new} <= {r.event_id for r in silver.select("event_id").collect()}
    assert [e["batch_id"] for e in ledger_entries(s)] == list(range(len(ledger_entries(s))))
    # gold, updated window by window over both runs, is what all of silver gives at once
    gold_columns = ["window_start", "device_type", "action_type", "events", "users", "sessions"]
    assert sorted(read_table(spark, s, "gold").select(*gold_columns).collect()) == sorted(
        gold_frame(silver, s["ingest"]["gold_window_s"]).select(*gold_columns).collect())

    # nothing new: nothing read, the lake unchanged
    third = run_ingest(spark, s)
    assert third.input_rows == 0 and third.summary["records_read"] == records + 320


def test_deltalake_reads_the_same_silver_and_a_reset_lake_skips_no_batch(spark, broker, tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from deltalake import DeltaTable

    from tests.reliability.test_operator_input import isolated_env
    from website_activity.stages.ingest import checkpoint_app_id

    s = make_settings(tmp_path, kafka__port=broker.port, kafka__controller_port=broker.controller_port,
                      topics__names=[f"r-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"],
                      spark__max_offsets_per_trigger=300, **NO_FAULTS)
    create_topics(s)
    run_produce(s, 600, seed=5)
    first = run_ingest(spark, s)
    assert first.silver_rows == 600 and first.batches >= 2
    app_id = checkpoint_app_id(s.path("checkpoints") / "ingest")

    # a reader outside Spark (delta-rs) sees exactly the rows Spark sees, column for column
    def norm(v):  # instants compared as instants: pyspark gives local naive times, delta-rs UTC-aware ones
        return v.timestamp() if isinstance(v, datetime) else v

    spark_rows = sorted(tuple(map(norm, r)) for r in read_table(spark, s, "silver").collect())
    arrow = DeltaTable(str(s.path("silver"))).to_pyarrow_table()
    columns = read_table(spark, s, "silver").columns
    rs_rows = sorted(tuple(norm(row[c]) for c in columns) for row in arrow.to_pylist())
    assert len(rs_rows) == 600 and rs_rows == spark_rows

    # make reset (the topics kept), then ingest again: batch ids restart at 0 with a new
    # checkpoint, and Delta must not take them for the old ones (that would skip them silently)
    root = Path(__file__).resolve().parents[2]
    env = isolated_env(tmp_path)
    done = subprocess.run([sys.executable, str(root / "scripts" / "reset.py")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not s.path("silver").exists() and not s.path("checkpoints").exists()
    again = run_ingest(spark, s)
    assert checkpoint_app_id(s.path("checkpoints") / "ingest") != app_id
    assert (again.input_rows, again.silver_rows) == (first.input_rows, 600)
    assert again.summary["reconciled"] and read_table(spark, s, "silver").count() == 600
