"""Parsing Kafka records: valid events to silver, everything else to quarantine with a reason."""

import json

from pyspark.sql import Row

from website_activity.generator import EventGenerator
from website_activity.ingest import parse_records, split_valid
from website_activity.lake import write_batch
from website_activity.produce import encode


def raw_frame(spark, values: list[bytes | None]):
    rows = [Row(value=v, topic="producer-a", partition=0, offset=i) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "value binary, topic string, partition int, offset long")


def sample_events(settings, n: int = 5) -> list[dict]:
    return list(EventGenerator.from_settings(settings, 11, "t").events(n))


def test_valid_events_become_typed_silver_rows(spark, settings) -> None:
    events = sample_events(settings)
    silver, quarantine = split_valid(parse_records(raw_frame(spark, [encode(e) for e in events]), settings), settings)
    assert quarantine.count() == 0
    rows = sorted(silver.collect(), key=lambda r: r.offset)
    assert [r.event_id for r in rows] == [e["event_id"] for e in events]
    first, e = rows[0], events[0]
    assert first.timestamp.isoformat(timespec="milliseconds") == e["timestamp"][:23]
    assert (first.click_coordinates_x, first.click_coordinates_y) == (e["click_coordinates_x"], e["click_coordinates_y"])
    assert str(first.event_date) == e["timestamp"][:10]
    assert dict(silver.dtypes)["timestamp"] == "timestamp" and dict(silver.dtypes)["click_coordinates_x"] == "int"


def test_bad_records_are_quarantined_with_their_reason(spark, settings) -> None:
    good = sample_events(settings, 1)[0]
    missing = {k: v for k, v in good.items() if k != "user_id"}
    bad_type = dict(good, click_coordinates_x="left")
    bad_time = dict(good, timestamp="yesterday")
    values = [b"not json at all", b"\xff\xfe\x00garbage", json.dumps(missing).encode(),
              json.dumps(bad_type).encode(), json.dumps(bad_time).encode(), b"[1, 2]", None, encode(good)]
    silver, quarantine = split_valid(parse_records(raw_frame(spark, values), settings), settings)
    reasons = {r.offset: r.reason for r in quarantine.collect()}
    assert reasons == {
        0: "not_json", 1: "not_json", 2: "missing_field:user_id", 3: "bad_type:click_coordinates_x",
        4: "bad_type:timestamp", 5: "not_json", 6: "not_json",
    }
    # nothing lost: every record is in exactly one of the two outputs
    assert silver.count() + quarantine.count() == len(values)
    assert [r.event_id for r in silver.collect()] == [good["event_id"]]
    assert quarantine.where("offset = 0").first().value == "not json at all"


def test_write_batch_replaces_a_replayed_batch(spark, settings, tmp_path) -> None:
    events = sample_events(settings, 40)
    silver, _ = split_valid(parse_records(raw_frame(spark, [encode(e) for e in events]), settings), settings)
    table = tmp_path / "silver"
    assert write_batch(silver, table, 0, partition_by="event_date") == 40
    # a replay of batch 0 (crash before the checkpoint commit) must not duplicate it
    assert write_batch(silver, table, 0, partition_by="event_date") == 40
    assert write_batch(silver.limit(3), table, 1, partition_by="event_date") == 3
    back = spark.read.parquet(str(table))
    assert back.count() == 43
    assert back.select("event_id").distinct().count() == 40
    assert not (table / "_staging").exists()
