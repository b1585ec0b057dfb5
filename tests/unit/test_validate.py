"""The quality gate on silver: a suite generated from the config, failures named and recorded."""

import copy
import json

import pytest
from pyspark.sql import functions as F

from website_activity.config import Settings
from website_activity.errors import PipelineError, ValidationFailed
from website_activity.generator import EventGenerator
from website_activity.ingest import parse_records, split_valid
from website_activity.lake import write_batch
from website_activity.schema import required_fields
from website_activity.validate import build_suite, run_validate, validate_frame

EVENTS = 2000


@pytest.fixture(scope="module")
def silver(spark, settings):
    """Clean silver rows, as ingest makes them from generated events (cached: reused by every test)."""
    events = EventGenerator.from_settings(settings, 7, "producer-a").events(EVENTS)
    raw = spark.createDataFrame(
        [(json.dumps(e), "producer-a", 0, i) for i, e in enumerate(events)],
        "value string, topic string, partition int, offset long",
    )
    df, quarantine = split_valid(parse_records(raw, settings), settings)
    df = df.cache()
    assert df.count() == EVENTS and quarantine.count() == 0
    yield df
    df.unpersist()


def settings_in(settings: Settings, tmp_path) -> Settings:
    """The session settings with silver and validation output in this test's own folder."""
    data = copy.deepcopy(settings.data)
    data["paths"].update(silver=str(tmp_path / "silver"), validation=str(tmp_path / "_validation"))
    return Settings(data=data, root=settings.root)


def failed(report) -> set[tuple[str, str | None]]:
    return {(f.expectation, f.column) for f in report.failures}


def test_suite_is_generated_from_the_config(settings) -> None:
    checks = {(e.expectation_type, getattr(e, "column", None)) for e in build_suite(settings).expectations}
    for name in required_fields(settings.schema_fields):
        assert ("expect_column_values_to_not_be_null", name) in checks
        assert ("expect_column_values_to_be_of_type", name) in checks
    for name in settings["schema"]["enums"]:
        assert ("expect_column_values_to_be_in_set", name) in checks
    # a new enum in the config is checked without touching the code
    data = copy.deepcopy(settings.data)
    data["schema"]["enums"]["timezone"] = ["UTC"]
    extended = build_suite(Settings(data=data, root=settings.root))
    assert len(extended.expectations) == len(build_suite(settings).expectations) + 1


def test_clean_events_pass(spark, settings, silver, capfd) -> None:
    report = validate_frame(silver, settings)
    assert report.success, report.summary()
    assert report.failures == []
    assert report.rows == EVENTS
    assert report.expectations == len(build_suite(settings).expectations)
    # GX's tqdm progress bars are off: nothing on the terminal
    assert "Calculating Metrics" not in capfd.readouterr().err


def null_user_id(df):
    return df.withColumn("user_id", F.when(F.col("offset").isin(3, 4, 5), F.lit(None)).otherwise(F.col("user_id")))


def unknown_device_type(df):
    return df.withColumn("device_type",
                         F.when(F.col("offset") == 10, F.lit("smartwatch")).otherwise(F.col("device_type")))


def duplicated_event_id(df):
    # a replayed record under the same id must not be counted twice
    first_id = df.where("offset = 0").first().event_id
    return df.withColumn("event_id", F.when(F.col("offset") == 1, F.lit(first_id)).otherwise(F.col("event_id")))


def extra_column(df):
    return df.withColumn("referrer", F.lit("https://search.example.com"))


def malformed_ip_address(df):
    # 256 is no octet: an unanchored or loose pattern would accept it
    return df.withColumn("ip_address",
                         F.when(F.col("offset") == 7, F.lit("10.0.0.256")).otherwise(F.col("ip_address")))


FIRST_EVENT_ID = object()  # stands for the event_id of offset 0, which the duplicate copies


@pytest.mark.parametrize(("corrupt", "expected", "count", "example"), [
    (null_user_id, ("expect_column_values_to_not_be_null", "user_id"), 3, None),
    (unknown_device_type, ("expect_column_values_to_be_in_set", "device_type"), 1, "smartwatch"),
    (duplicated_event_id, ("expect_column_values_to_be_unique", "event_id"), 2, FIRST_EVENT_ID),
    (extra_column, ("expect_table_columns_to_match_set", None), 1, "unexpected column referrer"),
    (malformed_ip_address, ("expect_column_values_to_match_regex", "ip_address"), 1, "10.0.0.256"),
], ids=["null-user-id", "unknown-device-type", "duplicated-event-id", "extra-column", "malformed-ip-address"])
def test_each_corruption_fails_the_right_expectation(settings, silver, corrupt, expected, count, example) -> None:
    report = validate_frame(corrupt(silver), settings)
    assert not report.success
    assert failed(report) == {expected}
    (failure,) = report.failures
    assert failure.unexpected_count == count
    if example is FIRST_EVENT_ID:
        example = silver.where("offset = 0").first().event_id
    assert example in failure.examples
    assert report.summary().startswith(f"1 of {report.expectations} expectations failed: {expected[0]}")


def test_run_validate_passes_on_silver_as_ingest_writes_it(spark, settings, silver, tmp_path) -> None:
    # partitioned Parquet read back: event_date comes from the folder names, and must still be a date
    local = settings_in(settings, tmp_path)
    write_batch(silver.where("offset < 300"), local.path("silver"), 0, partition_by="event_date")
    report = run_validate(spark, local)
    assert report.success and report.rows == 300
    latest = json.loads((local.path("validation") / "latest.json").read_text())
    assert latest["status"] == "passed" and latest["rows"] == 300 and latest["failures"] == []


def test_run_validate_records_failure_and_raises(spark, settings, silver, tmp_path) -> None:
    local = settings_in(settings, tmp_path)
    bad = silver.where("offset < 300").withColumn(
        "user_id", F.when(F.col("offset") == 0, F.lit(None)).otherwise(F.col("user_id")))
    write_batch(bad, local.path("silver"), 0, partition_by="event_date")
    with pytest.raises(ValidationFailed) as excinfo:
        run_validate(spark, local)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "expectations failed: expect_column_values_to_not_be_null(user_id): 1 row" in message
    latest = json.loads((local.path("validation") / "latest.json").read_text())
    assert latest["status"] == "failed" and latest["rows"] == 300 and latest["timestamp"]
    assert [(f["expectation"], f["column"], f["unexpected_count"]) for f in latest["failures"]] == [
        ("expect_column_values_to_not_be_null", "user_id", 1)]


@pytest.mark.parametrize("layout", ["missing", "only-staging"])
def test_run_validate_without_silver_says_run_ingest(spark, settings, tmp_path, layout) -> None:
    local = settings_in(settings, tmp_path)
    if layout == "only-staging":  # an ingest that crashed before moving its first batch
        staging = local.path("silver") / "_staging" / "batch-0"
        staging.mkdir(parents=True)
        (staging / "part-0.parquet").write_bytes(b"")
    with pytest.raises(PipelineError, match="no data in .*silver: run make ingest first") as excinfo:
        run_validate(spark, local)
    assert not isinstance(excinfo.value, ValidationFailed)
    assert not (local.path("validation") / "latest.json").exists()
