"""Topics -> two producers -> streaming ingest, on a real broker and a real SparkSession."""

from __future__ import annotations

import copy
import json

import pytest
from kafka import KafkaProducer

from website_activity.adapters.lake import read_table
from website_activity.adapters.topics import create_topics, delete_topics
from website_activity.core.catalog import produce_manifest_path
from website_activity.core.config import Settings
from website_activity.simulate.generator import FAULT_KINDS, EventGenerator
from website_activity.stages.ingest import run_ingest
from website_activity.stages.produce import run_produce, split_events

pytestmark = pytest.mark.integration


def expected_events(settings, events: int, seed: int) -> list[dict]:
    out = []
    for topic, n in zip(settings.topics, split_events(events, len(settings.topics))):
        out += EventGenerator.from_settings(settings, seed, topic, events=n).events(n)
    return out


def without_faults(settings: Settings) -> Settings:
    """The generator's faults off: these tests count exact rows in silver and quarantine, which the
    duplicates and the malformed records of the default fault rates would change."""
    data = copy.deepcopy(settings.data)
    data["generator"]["faults"].update({kind: 0.0 for kind in FAULT_KINDS})
    return Settings(data=data, root=settings.root)


def silver(spark, settings):
    return read_table(spark, settings, "silver")


def test_topics_are_created_once(kafka_settings) -> None:
    assert set(create_topics(kafka_settings).values()) == {"created"}
    assert set(create_topics(kafka_settings).values()) == {"exists"}
    assert delete_topics(kafka_settings) == kafka_settings.topics
    assert set(create_topics(kafka_settings).values()) == {"created"}


def test_every_event_lands_in_silver_exactly_once(spark, kafka_settings) -> None:
    s = without_faults(kafka_settings)
    create_topics(s)
    results = run_produce(s, 3001, seed=5)
    assert [r.sent for r in results] == [1501, 1500] and sum(r.failed for r in results) == 0
    assert json.loads(produce_manifest_path(s).read_text())["sent"] == 3001

    # malformed records travel the same topics and must be kept aside, not lost
    p = KafkaProducer(bootstrap_servers=s.bootstrap_servers)
    for value in (b"{broken", b'{"event_id": "x"}'):
        p.send(s.topics[0], value=value)
    p.flush()
    p.close()

    first = run_ingest(spark, s)
    assert (first.silver_rows, first.quarantined_rows) == (3001, 2)
    df = silver(spark, s)
    expected = expected_events(s, 3001, seed=5)
    # no event lost, none twice, and every value as produced
    assert df.count() == 3001
    assert sorted(r.event_id for r in df.select("event_id").collect()) == sorted(e["event_id"] for e in expected)
    by_id = {e["event_id"]: e for e in expected}
    for row in df.limit(50).collect():
        e = by_id[row.event_id]
        assert (row.user_id, row.page_url, row.action_type, row.click_coordinates_x) == (
            e["user_id"], e["page_url"], e["action_type"], e["click_coordinates_x"])
    reasons = sorted(r.reason for r in read_table(spark, s, "quarantine").collect())
    assert reasons == ["missing_field:user_id", "not_json"]  # the first missing field names the reason

    # a second run finds nothing new: the checkpoint remembers
    again = run_ingest(spark, s)
    assert again.input_rows == 0 and silver(spark, s).count() == 3001

    # new records after a restart are appended, exactly once
    run_produce(s, 400, seed=6)
    third = run_ingest(spark, s)
    assert third.silver_rows == 400 and silver(spark, s).count() == 3401
    assert silver(spark, s).select("event_id").distinct().count() == 3401


def test_a_batch_replayed_after_a_crash_is_not_counted_twice(spark, kafka_settings) -> None:
    s = without_faults(kafka_settings)
    s = s.__class__(data={**s.data, "spark": {**s["spark"], "max_offsets_per_trigger": 500}}, root=s.root)
    create_topics(s)
    run_produce(s, 2000, seed=9)
    first = run_ingest(spark, s)
    assert first.batches >= 3 and first.silver_rows == 2000
    # Simulate a crash after the last batch's files were written but before its commit:
    # Spark replays that batch on restart; the lake must still hold each event once.
    commits = sorted((s.path("checkpoints") / "ingest" / "commits").glob("[0-9]*"), key=lambda p: int(p.name))
    commits[-1].unlink()
    (commits[-1].parent / f".{commits[-1].name}.crc").unlink(missing_ok=True)
    replay = run_ingest(spark, s)
    assert replay.batches == 1 and replay.silver_rows > 0
    df = silver(spark, s)
    assert df.count() == 2000 and df.select("event_id").distinct().count() == 2000
    # the replayed batch is committed now: nothing is left to consume
    assert run_ingest(spark, s).input_rows == 0


