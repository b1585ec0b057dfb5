"""Parsing Kafka records: valid events to silver, everything else to quarantine with a reason;
dedup on event_id, the watermark's late flag, gold windows, idempotent batch writes."""

import json
import shutil
from datetime import datetime, timedelta

import pytest
from pyspark.sql import Row

from website_activity.adapters.lake import committed_rows, table_stats, table_version, write_batch
from website_activity.core.errors import PipelineError
from website_activity.simulate.generator import EventGenerator
from website_activity.stages.ingest import (checkpoint_app_id, deduplicate, gold_due, gold_frame, gold_range,
                                            latency_histogram, latency_percentiles, merge_spans, parse_records,
                                            reconcile, rules_of, split_valid, warm_up, window_spans)
from website_activity.stages.produce import encode


def raw_frame(spark, values: list[bytes | None]):
    rows = [Row(value=v, topic="producer-a", partition=0, offset=i) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "value binary, topic string, partition int, offset long")


def sample_events(settings, n: int = 5) -> list[dict]:
    return list(EventGenerator.from_settings(settings, 11, "t").events(n))


def test_valid_events_become_typed_silver_rows(spark, settings) -> None:
    events = sample_events(settings)
    silver, quarantine = split_valid(parse_records(raw_frame(spark, [encode(e) for e in events]), rules_of(settings)), rules_of(settings))
    assert quarantine.count() == 0
    rows = sorted(silver.collect(), key=lambda r: r.offset)
    assert [r.event_id for r in rows] == [e["event_id"] for e in events]
    first, e = rows[0], events[0]
    assert first.timestamp.isoformat(timespec="milliseconds") == e["timestamp"][:23]
    assert (first.click_coordinates_x, first.click_coordinates_y) == (e["click_coordinates_x"], e["click_coordinates_y"])
    assert str(first.event_date) == e["timestamp"][:10]
    types = dict(silver.dtypes)
    assert (types["timestamp"], types["click_coordinates_x"], types["click_coordinates_y"]) == ("timestamp", "int", "int")
    assert (types["event_date"], types["is_late"], types["offset"], types["partition"]) == ("date", "boolean", "bigint", "int")
    assert not any(r.is_late for r in rows)  # no watermark yet: nothing is late


def poison(settings) -> list[tuple[bytes | None, str]]:
    """One record of every kind that must be quarantined, with its expected reason code."""
    events = sample_events(settings, 60)
    good = events[0]
    click = next(e for e in events if e["action_type"] == "click")
    view = next(e for e in events if e["action_type"] == "view")
    width = settings["validation"]["viewports"][click["device_type"]][0]
    limit = settings["ingest"]["max_record_bytes"]
    future = (datetime.now().astimezone() + timedelta(days=2)).isoformat()
    drop = lambda e, k: {f: v for f, v in e.items() if f != k}  # noqa: E731
    return [
        (b"not json at all", "not_json"),
        (b"\xff\xfe\x00garbage", "not_json"),
        (encode(good)[:40], "not_json"),  # truncated JSON
        (b"[1, 2]", "not_json"),  # JSON, but not an object
        (None, "null_value"),  # a tombstone
        (json.dumps(drop(good, "user_id")).encode(), "missing_field:user_id"),
        (json.dumps(dict(good, session_id=None)).encode(), "missing_field:session_id"),
        (json.dumps(dict(good, click_coordinates_x="abc")).encode(), "bad_type:click_coordinates_x"),
        (json.dumps(dict(good, timestamp="yesterday")).encode(), "bad_type:timestamp"),
        (json.dumps(dict(good, timestamp=1767600000)).encode(), "bad_type:timestamp"),
        (json.dumps(dict(good, action_type="teleport")).encode(), "bad_enum:action_type"),
        (json.dumps(dict(good, device_type="fridge")).encode(), "bad_enum:device_type"),
        (json.dumps(dict(good, browser="Mosaic")).encode(), "bad_enum:browser"),
        (json.dumps(dict(click, click_coordinates_x=width)).encode(), "out_of_viewport"),
        (json.dumps(dict(click, click_coordinates_y=-5)).encode(), "out_of_viewport"),
        (json.dumps(dict(view, click_coordinates_x=10, click_coordinates_y=10)).encode(), "unexpected_coordinates"),
        (json.dumps(dict(good, page_url=good["page_url"] + "?" + "x" * limit)).encode(), "too_large"),
        (json.dumps(dict(good, timestamp=future)).encode(), "future_time"),
        (json.dumps(dict(good, timezone="Mars/Olympus_Mons")).encode(), "bad_timezone"),
        (json.dumps(dict(good, timezone="<script>")).encode(), "bad_timezone"),
    ]


def test_each_poison_kind_gets_its_reason_code(spark, settings) -> None:
    cases = poison(settings)
    good = sample_events(settings, 1)[0]
    values = [v for v, _ in cases] + [encode(good)]
    silver, quarantine = split_valid(parse_records(raw_frame(spark, values), rules_of(settings)), rules_of(settings))
    rows = {r.offset: r for r in quarantine.collect()}
    assert {o: r.reason for o, r in rows.items()} == {i: reason for i, (_, reason) in enumerate(cases)}
    # nothing lost: every record is in exactly one of the two outputs
    assert silver.count() + quarantine.count() == len(values)
    assert [r.event_id for r in silver.collect()] == [good["event_id"]]
    # each keeps its raw value, a message a person can read, and where it came from
    assert rows[0].value == "not json at all" and rows[0].message == "the value is not a JSON object"
    assert all(r.message and r.topic == "producer-a" and r.ingest_time is not None for r in rows.values())
    assert rows[4].value is None
    assert "click_coordinates_x" in rows[7].message and "abc" in rows[7].message
    assert rows[13].message.startswith("click at (") and "viewport" in rows[13].message
    assert str(settings["ingest"]["max_record_bytes"]) in rows[16].message
    assert len(rows[16].value) > settings["ingest"]["max_record_bytes"]
    assert rows[18].message.startswith("timezone Mars/Olympus_Mons is not a region-based time zone ID")


def silver_rows(spark, settings, events, offsets=None):
    raw = raw_frame(spark, [encode(e) for e in events])
    if offsets is not None:
        raw = spark.createDataFrame([Row(value=encode(e), topic="producer-a", partition=0, offset=o)
                                     for e, o in zip(events, offsets)],
                                    "value binary, topic string, partition int, offset long")
    return split_valid(parse_records(raw, rules_of(settings)), rules_of(settings))[0]


def test_dedup_keeps_the_first_record_and_drops_ids_already_in_silver(spark, settings) -> None:
    events = sample_events(settings, 6)
    # events 1 and 3 re-sent later in the batch (same bytes, later offsets)
    batch = silver_rows(spark, settings, events + [events[1], events[3]], offsets=[0, 1, 2, 3, 4, 5, 9, 7])
    existing = batch.where("offset = 5").select("event_date", "event_id")
    for files in (1, 3):
        out = sorted((r.event_id, r.offset) for r in deduplicate(batch, existing, files).collect())
        assert out == sorted((e["event_id"], i) for i, e in enumerate(events[:5]))
        assert deduplicate(batch, None, files).count() == 6
        assert deduplicate(batch, None, files).columns == batch.columns
    # the files a write makes: ranges of event time, each sorted by it
    from pyspark.sql import functions as F

    for files in (1, 2):
        rows = deduplicate(batch, None, files).select("timestamp", F.spark_partition_id().alias("task")).collect()
        tasks: dict = {}
        for r in rows:
            tasks.setdefault(r.task, []).append(r.timestamp)
        assert len(tasks) == files
        assert all(t == sorted(t) for t in tasks.values())
        spans = sorted((min(t), max(t)) for t in tasks.values())
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # the ranges do not overlap


def test_events_behind_the_watermark_are_flagged_late_not_dropped(spark, settings) -> None:
    events = sample_events(settings, 10)
    # the generator's times are UTC ("+00:00"), and so is the session: compare naive UTC values
    watermark = datetime.fromisoformat(sorted(e["timestamp"] for e in events)[5][:19])
    parsed = parse_records(raw_frame(spark, [encode(e) for e in events]), rules_of(settings))
    silver, _ = split_valid(parsed, rules_of(settings), watermark)
    rows = silver.collect()
    assert len(rows) == 10
    assert sorted(r.is_late for r in rows) == [False] * 5 + [True] * 5
    assert all((r.timestamp < watermark) == r.is_late for r in rows)


def test_gold_counts_events_users_and_sessions_per_minute_without_late_events(spark) -> None:
    rows = [("u1", "s1", "2026-01-05 08:00:05", "mobile", "view", False),
            ("u1", "s1", "2026-01-05 08:00:40", "mobile", "view", False),
            ("u2", "s2", "2026-01-05 08:00:59", "mobile", "view", False),
            ("u2", "s2", "2026-01-05 08:01:00", "mobile", "view", False),
            ("u3", "s3", "2026-01-05 08:00:10", "mobile", "view", True)]  # late: not in gold
    df = spark.createDataFrame(rows, "user_id string, session_id string, timestamp string, device_type string, "
                                     "action_type string, is_late boolean").selectExpr(
        "user_id", "session_id", "cast(timestamp as timestamp) as timestamp", "device_type", "action_type", "is_late")
    out = [(str(r.window_start), r.events, r.users, r.sessions, str(r.event_date))
           for r in gold_frame(df, 60).orderBy("window_start").collect()]
    assert out == [("2026-01-05 08:00:00", 3, 2, 2, "2026-01-05"), ("2026-01-05 08:01:00", 1, 1, 1, "2026-01-05")]


def test_gold_distinct_counts_match_count_distinct_on_generated_traffic(spark, settings) -> None:
    from pyspark.sql import functions as F

    rows = silver_rows(spark, settings, sample_events(settings, 600))
    w = F.window("timestamp", "60 seconds")
    want = (rows.where(~F.col("is_late")).groupBy(w.start.alias("window_start"), "device_type", "action_type")
            .agg(F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users"),
                 F.countDistinct("session_id").alias("sessions")))
    got = gold_frame(rows, 60).select("window_start", "device_type", "action_type", "events", "users", "sessions")
    assert got.dtypes == want.dtypes  # a lake's gold table keeps its schema (users, sessions: bigint)
    assert sorted(got.collect()) == sorted(want.collect())
    assert got.where("users > 1 OR events > sessions").count() > 0  # the sample has groups to tell them apart


def test_write_batch_is_idempotent_by_app_and_batch_id(spark, settings, tmp_path) -> None:
    events = sample_events(settings, 40)
    silver = silver_rows(spark, settings, events)
    table = tmp_path / "silver"
    assert write_batch(silver, table, 0, partition_by="event_date", app_id="a") == 40
    # a replay of batch 0 (crash before the checkpoint commit) must not duplicate it
    version = table_version(table)
    assert write_batch(silver, table, 0, partition_by="event_date", app_id="a") == 40
    assert table_version(table) == version  # Delta skipped it: no new commit
    assert write_batch(silver.limit(3), table, 1, partition_by="event_date", app_id="a") == 3
    back = spark.read.format("delta").load(str(table))
    assert back.count() == 43
    assert back.select("event_id").distinct().count() == 40
    assert committed_rows(table, "a", 1) == 3 and committed_rows(table, "a", 2) is None
    # another app id (a new checkpoint, whose batch ids restart at 0) is not skipped
    assert write_batch(silver.limit(5), table, 0, partition_by="event_date", app_id="b") == 5
    assert spark.read.format("delta").load(str(table)).count() == 48
    # the tables get optimizeWrite and auto compaction as table properties
    props = spark.sql(f"DESCRIBE DETAIL delta.`{table}`").first().properties
    assert props["delta.autoOptimize.optimizeWrite"] == props["delta.autoOptimize.autoCompact"] == "true"
    assert props["delta.checkpointInterval"] == "100"  # a checkpoint's cost, once per 100 batches
    assert table_stats(table)["rows"] == 48


def test_a_new_checkpoint_gets_a_new_app_id(tmp_path) -> None:
    checkpoint = tmp_path / "checkpoints" / "ingest"
    first = checkpoint_app_id(checkpoint)
    assert checkpoint_app_id(checkpoint) == first  # kept with the checkpoint
    shutil.rmtree(checkpoint)  # make reset
    assert checkpoint_app_id(checkpoint) != first
    # a checkpoint with batches but no id was not made by this ingest: refuse it
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "offsets" / "0").write_text("v1")
    (checkpoint / "delta_app_id").unlink()
    with pytest.raises(PipelineError, match="make reset"):
        checkpoint_app_id(checkpoint)


def test_gold_range_covers_the_touched_windows() -> None:
    assert gold_range("2026-01-05T08:00:59.900000", "2026-01-05T08:02:00.000000", 60) == (
        "2026-01-05 08:00:00", "2026-01-05 08:03:00")


def test_touched_windows_are_spans_of_their_own_and_pending_ones_join_until_the_interval_has_passed() -> None:
    # the stream's last minutes, and a late session two hours behind: two spans, not the hours between
    spans = window_spans([("2026-01-05T08:01:10", "2026-01-05T08:02:30"),
                          ("2026-01-05T06:00:05", "2026-01-05T06:03:00"),
                          ("2026-01-05T08:02:40", "2026-01-05T08:02:59.5")], 60)
    assert spans == [["2026-01-05 06:00:00", "2026-01-05 06:04:00"], ["2026-01-05 08:01:00", "2026-01-05 08:03:00"]]
    assert window_spans([], 60) == [] and merge_spans(None, []) == []
    # a later batch's windows join the pending ones where they touch, stay apart where they do not
    later = [["2026-01-05 08:03:00", "2026-01-05 08:04:00"], ["2026-01-05 07:00:00", "2026-01-05 07:01:00"]]
    assert merge_spans(spans, later) == [["2026-01-05 06:00:00", "2026-01-05 06:04:00"],
                                         ["2026-01-05 07:00:00", "2026-01-05 07:01:00"],
                                         ["2026-01-05 08:01:00", "2026-01-05 08:04:00"]]
    # at most 32 spans: beyond, the closest neighbours are joined
    many = [[f"2026-01-05 {h:02d}:00:00", f"2026-01-05 {h:02d}:01:00"] for h in range(24)]
    many += [[f"2026-01-06 {h:02d}:00:00", f"2026-01-06 {h:02d}:01:00"] for h in range(24)]
    merged = merge_spans(many)
    assert len(merged) == 32 and merged[0][0] == many[0][0] and merged[-1][1] == many[-1][1]
    # due once the oldest pending batch's ingest time is interval_s behind; 0: every batch
    assert not gold_due("2026-01-05T08:00:00", "2026-01-05T08:00:09", 10)
    assert gold_due("2026-01-05T08:00:00", "2026-01-05T08:00:10", 10)
    assert not gold_due(None, "2026-01-05T08:00:10", 10)
    assert gold_due(None, "2026-01-05T08:00:00", 0)


def test_latency_is_counted_from_the_kafka_append_to_the_silver_commit() -> None:
    # buckets of 100 ms of Kafka time (epoch ms // 100); quarantined rows carry none
    counts = [Row(kt=10_000, n=3), Row(kt=10_020, n=1), Row(kt=None, n=7), Row(kt=10_000, n=2)]
    hist = latency_histogram(counts, committed_at=1_003.0)  # 1,003 s = 10,030 buckets
    assert hist == {"900": 1, "2900": 5}  # 3.0 s - 50 ms (a bucket's middle), 1.0 s - 50 ms
    p = latency_percentiles([hist, {"900": 4}])
    assert p == {"p50": 1.0, "p95": 3.0, "p99": 3.0, "max": 3.0}
    assert latency_percentiles([]) is None and latency_percentiles([None, {}]) is None  # no record: no figure


@pytest.mark.parametrize("change, problem", [
    ({}, None),
    ({"duplicates_removed": 1}, "records_read 10 != silver 7 + quarantined 2 + duplicates_removed 2"),
    ({"silver_table": 8}, "silver holds 8 rows, the ledger says silver 7"),
    ({"bronze_table": 9}, "bronze holds 9 rows, the ledger says records_read 10"),
])
def test_reconcile_names_what_does_not_add_up(change, problem) -> None:
    summary = {"records_read": 10, "silver": 7, "quarantined": 2, "duplicates_removed": 1,
               "tables": {"bronze": {"rows": 10}, "silver": {"rows": 7}, "quarantine": {"rows": 2}}}
    if "duplicates_removed" in change:
        summary["duplicates_removed"] += change["duplicates_removed"]
    if "silver_table" in change:
        summary["tables"]["silver"]["rows"] = change["silver_table"]
    if "bronze_table" in change:
        summary["tables"]["bronze"]["rows"] = change["bronze_table"]
    assert reconcile(summary) == ([] if problem is None else [problem])


def test_a_lost_broker_is_named_in_the_stream_failure_line(tmp_path) -> None:
    from tests.conftest import make_settings
    from website_activity.stages.ingest import stream_failure

    s = make_settings(tmp_path, kafka__port=19093)
    # what Spark 4.1 raised in a live run whose broker was SIGKILLed (the query's first line)
    lost = RuntimeError("[STREAM_FAILED] Query [id = 00e5, runId = 149c] terminated with exception: "
                        "org.apache.kafka.common.errors.TimeoutException: Timed out waiting for a node "
                        "assignment. Call: listNodes SQLSTATE: XXKST")
    line = stream_failure(lost, s, 5)
    assert line.startswith("the Kafka broker at 127.0.0.1:19093 stopped answering while the stream ran "
                           "(Kafka: Timed out waiting for a node assignment); the 5 batches committed before")
    assert "\n" not in line
    other = RuntimeError("[STREAM_FAILED] Query terminated with exception: something else\n\tat org.apache...")
    assert stream_failure(other, s, 1) == ("streaming ingest failed: [STREAM_FAILED] Query terminated with "
                                           "exception: something else")


def test_warm_up_runs_one_batch_through_ingest_and_leaves_the_lake_alone(spark, tmp_path) -> None:
    from tests.conftest import make_settings

    s = make_settings(tmp_path)
    stats = warm_up(spark, s, records=400)
    assert stats.records_read >= 400  # the valid events, plus the generator's faults
    assert stats.silver > 0  # both paths of the batch ran: the warm-up's own bad records always
    assert stats.quarantine_by_reason.get("not_json", 0) >= len(s.topics)  # reach the quarantine
    assert stats.records_read == stats.silver + stats.quarantined + stats.duplicates_removed
    assert stats.gold_pending == []  # its batch created gold, so it wrote gold (and compiled its code)
    for key in ("bronze", "silver", "quarantine", "gold", "runs", "checkpoints"):
        assert not s.path(key).exists(), key  # only a scratch lake, deleted after


def added_files(table) -> list[dict]:
    """The ``add`` actions of a Delta table's log, oldest commit first."""
    return [json.loads(line)["add"] for f in sorted((table / "_delta_log").glob("*.json"))
            for line in f.read_text().splitlines() if '"add"' in line]


def test_a_table_keeps_file_statistics_of_the_chosen_columns_only(spark, tmp_path) -> None:
    table = tmp_path / "t"
    rows = spark.range(20).selectExpr("id", "uuid() AS text", "CAST(id % 2 AS INT) AS n")
    assert write_batch(rows, table, 0, app_id="a", stats_columns=("id", "n")) == 20
    assert write_batch(rows, table, 1, app_id="a", stats_columns=("id", "n")) == 20  # the table exists now
    adds = added_files(table)
    assert len(adds) >= 2
    for add in adds:
        stats = json.loads(add["stats"])
        assert stats["numRecords"] > 0
        assert set(stats["minValues"]) == {"id", "n"}  # not the text column


def test_a_batch_replayed_after_silver_committed_and_bronze_not_keeps_its_ingest_time(spark, tmp_path) -> None:
    """Bronze commits alongside silver: a crash can leave silver's commit of a batch in and
    bronze's not. The replay must take the first attempt's ingest time from silver's commit (the
    future_time rule compares with it), write bronze once and skip silver and quarantine."""
    import time

    from tests.conftest import make_settings
    from website_activity.stages.ingest.run import generated_batch, process_batch

    s = make_settings(tmp_path)
    kafka = generated_batch(spark, s, 300, seed=3)
    first = process_batch(kafka, 0, s, None, app_id="replay")
    assert first.silver > 0 and first.quarantined > 0
    # the crash: bronze's commit never made it, nor the ledger entry (a write that did not commit
    # left no visible rows: here, no table at all)
    shutil.rmtree(s.path("bronze"))
    (s.path("runs") / "ingest_batches" / "0000000000.json").unlink()
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    time.sleep(1.2)  # "now" is a second later: a replay that took it would differ
    again = process_batch(kafka, 0, s, None, app_id="replay")
    assert not again.replayed and again.ingest_time == first.ingest_time
    assert (again.silver, again.quarantined) == (first.silver, first.quarantined)  # Delta skipped both
    assert table_stats(s.path("bronze"))["rows"] == again.records_read == first.records_read
    assert table_stats(s.path("silver"))["rows"] == first.silver
    assert table_version(s.path("silver")) == table_version(s.path("quarantine")) == 0  # no second commit


def test_a_batch_writes_silver_as_one_file_sorted_by_event_time_with_row_group_statistics(spark, tmp_path) -> None:
    """Silver is not partitioned: a batch's rows go in one file (up to ``ingest.silver_file_rows``),
    sorted by event time, whose row groups keep the time's min and max (Parquet's timestamp type,
    not INT96, which has none), so a reader of a few minutes skips the rest of a large file."""
    import pyarrow.parquet as pq

    from tests.conftest import make_settings
    from website_activity.stages.ingest.run import generated_batch, process_batch

    s = make_settings(tmp_path)
    stats = process_batch(generated_batch(spark, s, 2000, seed=5), 0, s, None, app_id="layout")
    assert stats.silver > 1000
    silver = s.path("silver")
    adds = added_files(silver)
    assert len(adds) == 1 and adds[0]["partitionValues"] == {}
    assert not list(silver.glob("event_date=*"))
    meta = pq.ParquetFile(silver / adds[0]["path"]).metadata
    col = meta.schema.names.index("timestamp")
    assert meta.schema.column(col).physical_type == "INT64"
    groups = [meta.row_group(g).column(col).statistics for g in range(meta.num_row_groups)]
    assert all(g.has_min_max for g in groups)
    times = pq.read_table(silver / adds[0]["path"], columns=["timestamp"]).column("timestamp").to_pylist()
    assert len(times) == stats.silver and times == sorted(times)


def test_a_large_file_is_written_in_row_groups_a_time_filter_can_skip(spark, tmp_path) -> None:
    """The session writes Parquet row groups of 16 MB, not Parquet's 128 MB: a silver file of a
    large batch (tens of MB, sorted by event time) holds several, each with its own time range."""
    import pyarrow.parquet as pq

    table = tmp_path / "t"
    rows = (spark.range(300_000).selectExpr("TIMESTAMP_SECONDS(id) AS timestamp", "uuid() AS a", "uuid() AS b",
                                            "uuid() AS c").repartition(1).sortWithinPartitions("timestamp"))
    assert write_batch(rows, table, 0, app_id="a") == 300_000
    (add,) = added_files(table)
    meta = pq.ParquetFile(table / add["path"]).metadata
    assert meta.num_row_groups >= 2
    col = meta.schema.names.index("timestamp")
    spans = [(g.column(col).statistics.min, g.column(col).statistics.max)
             for g in map(meta.row_group, range(meta.num_row_groups))]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))  # disjoint time ranges: skippable


def test_a_batch_leaves_no_rows_of_its_own_in_spark_memory(spark, tmp_path) -> None:
    """The parsed rows are kept for the batch's jobs (a local checkpoint) and freed after it: a
    stream of batches must not pile them up. What stays is Delta's cached table state."""
    from tests.conftest import make_settings
    from website_activity.adapters.lake import settle
    from website_activity.stages.ingest.run import generated_batch, process_batch

    def kept() -> dict[int, str]:
        rdds = spark.sparkContext._jsc.getPersistentRDDs()
        return {int(k): str(rdds.get(k).name()) for k in rdds.keySet().toArray()}

    s = make_settings(tmp_path)
    before = kept()
    for batch_id in range(2):
        stats = process_batch(generated_batch(spark, s, 500, seed=11 + batch_id), batch_id, s, None, app_id="memory")
        assert stats.silver > 0
    settle()
    left = {k: name for k, name in kept().items() if k not in before}
    assert left  # Delta's states of the new tables, so the check sees what is kept
    assert all(name.startswith("Delta Table State") for name in left.values()), left


def test_a_misspelt_batch_count_is_an_error_not_a_new_attribute() -> None:
    from website_activity.stages.ingest.accounting import BatchStats

    stats = BatchStats(0, 10, 9, 1, 0, {}, {}, {}, "2026-01-01T00:00:00", 0.5)
    with pytest.raises(AttributeError):
        stats.read = 10  # records_read
    assert stats.to_dict()["records_read"] == 10 and "replayed" not in stats.to_dict()
    assert BatchStats(**stats.to_dict()) == stats  # a ledger entry reads back as the same stats
