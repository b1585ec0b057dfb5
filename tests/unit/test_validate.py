"""The quality gate: suites generated from the config, failures named and recorded, Data Docs."""

import copy
import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from website_activity.adapters.lake import write_batch
from website_activity.core.config import Settings, load_config, repo_root
from website_activity.core.errors import PipelineError, ValidationFailed
from website_activity.core.schema import required_fields
from website_activity.simulate.generator import EventGenerator
from website_activity.stages.ingest import parse_records, rules_of, split_valid
from website_activity.stages.validate import (CSV_HEADER, RECONCILIATION_SUITE, SUITE_NAME, build_suite, build_suites,
                                              earliest_event_time, quarantine_rate, reconciliation_frame,
                                              run_validate, save_project, suite_rules, validate_frame,
                                              validate_frames)

EVENTS = 2000
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"


@pytest.fixture(scope="module")
def silver(spark, settings):
    """Clean silver rows, as ingest makes them from generated events (cached: reused by every test)."""
    events = EventGenerator.from_settings(settings, 7, "producer-a").events(EVENTS)
    raw = spark.createDataFrame(
        [(json.dumps(e), "producer-a", 0, i) for i, e in enumerate(events)],
        "value string, topic string, partition int, offset long",
    )
    df, quarantine = split_valid(parse_records(raw, rules_of(settings)), rules_of(settings))
    df = df.cache()
    assert df.count() == EVENTS and quarantine.count() == 0
    yield df
    df.unpersist()


def settings_in(settings: Settings, tmp_path) -> Settings:
    """The session settings with the lake, the GX project and the outputs in this test's own folder."""
    data = copy.deepcopy(settings.data)
    data["paths"].update({key: str(tmp_path / key) for key in
                          ("silver", "quarantine", "validation", "reports", "gx")})
    return Settings(data=data, root=settings.root)


def with_rules(settings: Settings, **rules) -> Settings:
    data = copy.deepcopy(settings.data)
    data["validation"].update(rules)
    return Settings(data=data, root=settings.root)


def failed(report) -> set[tuple[str, str | None]]:
    return {(f.expectation, f.column) for f in report.failures}


def test_suite_is_generated_from_the_config(settings) -> None:
    checks = {(e.expectation_type, getattr(e, "column", None)) for e in build_suite(suite_rules(settings)).expectations}
    for name in required_fields(settings.schema_fields):
        assert ("expect_column_values_to_not_be_null", name) in checks
        assert ("expect_column_values_to_be_of_type", name) in checks
    for name in settings["schema"]["enums"]:
        assert (IN_SET, name) in checks
    # a new enum in the config is checked without touching the code
    data = copy.deepcopy(settings.data)
    data["schema"]["enums"]["timezone"] = ["UTC"]
    extended = build_suite(suite_rules(Settings(data=data, root=settings.root)))
    assert len(extended.expectations) == len(build_suite(suite_rules(settings)).expectations) + 1


def test_viewports_and_shares_come_from_the_config(settings) -> None:
    def viewport_bounds(s):
        return {(e.notes, e.column): e.max_value for e in build_suite(suite_rules(s)).expectations
                if e.expectation_type == BETWEEN and e.row_condition is not None}

    bounds = viewport_bounds(settings)
    assert bounds[("mobile clicks inside 390x844", "click_coordinates_x")] == 389
    assert bounds[("desktop clicks inside 1920x1080", "click_coordinates_y")] == 1079
    wider = with_rules(settings, viewports={**settings["validation"]["viewports"], "mobile": [430, 932]})
    assert viewport_bounds(wider)[("mobile clicks inside 430x932", "click_coordinates_x")] == 429
    # a share bound of 0 or 1 checks nothing, so no expectation is generated for it
    shares = [e.notes for e in build_suite(suite_rules(settings)).expectations if "share" in (e.notes or "")]
    assert "tablet share <= 0.5" in shares and not any(n.startswith("tablet share >=") for n in shares)


def test_committed_project_matches_the_config(spark, tmp_path) -> None:
    # gx/ in the repository is what `make validate` regenerates: it must not drift from conf/
    local = load_config("local", {"paths.gx": str(tmp_path / "gx")}, environ={})
    save_project(local)
    committed = repo_root() / "gx"

    def without_ids(value):
        if isinstance(value, dict):
            return {k: without_ids(v) for k, v in value.items() if k != "id"}
        if isinstance(value, list):
            return [without_ids(v) for v in value]
        return value

    for folder in ("expectations", "validation_definitions", "checkpoints"):
        generated = sorted(p.name for p in (tmp_path / "gx" / folder).glob("*.json"))
        assert generated == sorted(f"{name}.json" for name in build_suites(suite_rules(local))), folder
        assert sorted(p.name for p in (committed / folder).glob("*.json")) == generated, folder
        for name in generated:
            fresh = json.loads((tmp_path / "gx" / folder / name).read_text())
            assert without_ids(json.loads((committed / folder / name).read_text())) == without_ids(fresh), \
                f"gx/{folder}/{name} is out of date: run make validate (or scripts/validate.py --save-only)"


def test_clean_events_pass(spark, settings, silver, capfd) -> None:
    report = validate_frame(silver, settings)
    assert report.success, report.summary()
    assert report.failures == []
    assert report.rows == EVENTS
    assert report.expectations == len(build_suite(suite_rules(settings)).expectations)
    # the device shares are fetched even when they pass: they are worth reading
    shares = {o.rule: o for o in report.outcomes if o.rule and "share" in o.rule}
    desktop = silver.where("device_type = 'desktop'").count()
    assert shares["desktop share >= 0.05"].unexpected_count == EVENTS - desktop
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


def first_click(df, device):
    return df.where(f"action_type = 'click' AND device_type = '{device}'").orderBy("offset").first().offset


def click_outside_viewport(df):
    # x = 500 is inside a desktop's 1920 px but outside a mobile's 390 px
    offset = first_click(df, "mobile")
    return df.withColumn("click_coordinates_x",
                         F.when(F.col("offset") == offset, F.lit(500)).otherwise(F.col("click_coordinates_x")))


def coordinates_without_click(df):
    return df.withColumn("click_coordinates_y", F.when((F.col("action_type") == "view") & (F.col("offset") < 100),
                                                       F.lit(200)).otherwise(F.col("click_coordinates_y")))


FUTURE = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)


def future_timestamp(df):
    return df.withColumn("timestamp", F.when(F.col("offset") == 20, F.lit(FUTURE)).otherwise(F.col("timestamp")))


def timestamp_before_the_run(df):
    return df.withColumn("timestamp", F.when(F.col("offset") == 21, F.lit(datetime(2020, 1, 1, tzinfo=timezone.utc)))
                         .otherwise(F.col("timestamp")))


FIRST_EVENT_ID = object()  # stands for the event_id of offset 0, which the duplicate copies
VIEW_ROWS = object()  # stands for the number of views among the first 100 rows


@pytest.mark.parametrize(("corrupt", "expected", "count", "example"), [
    (null_user_id, ("expect_column_values_to_not_be_null", "user_id", None), 3, None),
    (unknown_device_type, (IN_SET, "device_type", None), 1, "smartwatch"),
    (duplicated_event_id, ("expect_column_values_to_be_unique", "event_id", None), 2, FIRST_EVENT_ID),
    (extra_column, ("expect_table_columns_to_match_set", None, None), 1, "unexpected column referrer"),
    (malformed_ip_address, ("expect_column_values_to_match_regex", "ip_address", None), 1, "10.0.0.256"),
    (click_outside_viewport, (BETWEEN, "click_coordinates_x", "mobile clicks inside 390x844"), 1, 500),
    (coordinates_without_click, (IN_SET, "click_coordinates_y", "-1 unless a click"), VIEW_ROWS, 200),
    (future_timestamp, (BETWEEN, "timestamp", "never in the future"), 1, FUTURE.strftime("%Y-%m-%d %H:%M:%S")),
    (timestamp_before_the_run, (BETWEEN, "timestamp", "not before 2026-01-04 08:00 UTC"), 1, "2020-01-01 00:00:00"),
], ids=["null-user-id", "unknown-device-type", "duplicated-event-id", "extra-column", "malformed-ip-address",
        "click-outside-viewport", "coordinates-without-click", "future-timestamp", "timestamp-before-the-run"])
def test_each_corruption_fails_the_right_expectation(settings, silver, corrupt, expected, count, example) -> None:
    report = validate_frame(corrupt(silver), settings)
    assert not report.success
    assert {(f.expectation, f.column, f.rule) for f in report.failures} == {expected}
    (failure,) = report.failures
    if count is VIEW_ROWS:
        count = silver.where("action_type = 'view' AND offset < 100").count()
    assert failure.unexpected_count == count
    if example is FIRST_EVENT_ID:
        example = silver.where("offset = 0").first().event_id
    # timestamps come back from GX as strings: compare them by their leading date and time
    assert any(str(v).replace("T", " ").startswith(str(example)) for v in failure.examples), failure.examples
    summary = report.summary()
    assert summary.startswith(f"1 of {report.expectations} expectations failed: {expected[0]}")
    if expected[2]:
        assert f"[{expected[2]}]" in summary


def test_a_skewed_device_mix_fails_the_share_bounds(settings, silver) -> None:
    # nearly only mobile traffic: a broken tracker on desktop, say (distribution sanity, `mostly`)
    skewed = silver.where("device_type = 'mobile' OR offset % 50 = 0")
    report = validate_frame(skewed, settings)
    by_rule = {f.rule: f for f in report.failures}
    assert set(by_rule) == {"mobile share <= 0.9", "desktop share >= 0.05"}
    mobile = skewed.where("device_type = 'mobile'").count() / skewed.count()
    assert by_rule["mobile share <= 0.9"].describe().endswith(
        f"{100 * (1 - mobile):.1f}% of rows comply, at least 10% must")


def test_the_quarantine_rate_is_reconciled(spark, settings) -> None:
    limit = settings["validation"]["max_quarantine_rate"]
    assert quarantine_rate(0, 0) == 0.0 and quarantine_rate(90, 10) == 0.1
    ok = validate_frames({RECONCILIATION_SUITE: reconciliation_frame(spark, 1000, 0)}, settings)
    assert ok.success and ok.suites == {RECONCILIATION_SUITE: True}
    too_many = validate_frames({RECONCILIATION_SUITE: reconciliation_frame(spark, 900, 100)}, settings)
    (failure,) = too_many.failures
    assert (failure.suite, failure.expectation, failure.column) == (RECONCILIATION_SUITE, BETWEEN, "quarantine_rate")
    assert failure.examples == [0.1] and failure.rule == f"quarantined / (silver + quarantined) <= {limit:g}"


def test_records_read_must_equal_silver_plus_quarantined_plus_duplicates(spark, settings) -> None:
    # ingest's summary says 1000 records were read: 990 + 5 + 5 accounts for all of them
    ok = validate_frames({RECONCILIATION_SUITE: reconciliation_frame(spark, 990, 5, records_read=1000,
                                                                     duplicates_removed=5)}, settings)
    assert ok.success
    # one record unaccounted for (lost, or a silver row gone): the gate fails on it
    lost = validate_frames({RECONCILIATION_SUITE: reconciliation_frame(spark, 989, 5, records_read=1000,
                                                                       duplicates_removed=5)}, settings)
    (failure,) = lost.failures
    assert (failure.column, failure.examples) == ("unaccounted", [1])
    assert failure.rule == "records_read - silver - quarantined - duplicates_removed == 0"


def test_the_event_time_window_starts_before_the_generator(settings) -> None:
    start = datetime.fromisoformat(settings["generator"]["start_time"])
    margin = timedelta(hours=settings["validation"]["event_time_margin_h"])
    assert earliest_event_time(suite_rules(settings)) == start - margin


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_run_validate_writes_data_docs_csv_and_latest(spark, settings, silver, tmp_path) -> None:
    # a partitioned Delta table read back: event_date is a partition column, and must still be a date
    local = settings_in(settings, tmp_path)
    write_batch(silver.where("offset < 300"), local.path("silver"), 0, partition_by="event_date")
    report = run_validate(spark, local)
    assert report.success and report.rows == 300
    assert report.suites == {SUITE_NAME: True, RECONCILIATION_SUITE: True}

    latest = json.loads((local.path("validation") / "latest.json").read_text())
    assert latest["status"] == "passed" and latest["rows"] == 300 and latest["failures"] == []
    assert latest["quarantine"] == {"rows": 0, "rate": 0.0}  # no quarantine table: nothing quarantined
    # lineage: the gate names the silver version it read (one commit: version 0); no quarantine table
    assert latest["silver_version"] == 0 and latest["fingerprint"] == "silver@0 quarantine@none"

    rows = read_csv(local.path("reports") / "data_quality.csv")
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == report.expectations and {r["success"] for r in rows} == {"true"}
    assert {r["suite"] for r in rows} == {SUITE_NAME, RECONCILIATION_SUITE}
    not_null = [r for r in rows if r["expectation"] == "expect_column_values_to_not_be_null"]
    assert not_null and {(r["unexpected_count"], r["unexpected_percent"]) for r in not_null} == {("0", "0.0000")}

    docs = local.path("reports") / "data_docs"
    index = (docs / "index.html").read_text(encoding="utf-8")
    pages = sorted(docs.rglob("*.html"))
    # both suites' results are listed, and their pages are there
    links = [line.split('href="')[1].split('"')[0] for line in index.splitlines() if ">open</a>" in line]
    assert {link.split("/")[1] for link in links if link.startswith("validations/")} == {SUITE_NAME, RECONCILIATION_SUITE}
    assert all((docs / link).is_file() for link in links)
    # nothing is fetched from the network: no CDN scripts or styles, no remote logo
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, page
        assert "<script src=" not in text and "<link rel=\"stylesheet\"" not in text, page


def test_run_validate_records_failures_of_both_suites_and_raises(spark, settings, silver, tmp_path) -> None:
    local = settings_in(settings, tmp_path)
    bad = silver.where("offset < 300").withColumn(
        "user_id", F.when(F.col("offset") == 0, F.lit(None)).otherwise(F.col("user_id")))
    write_batch(bad, local.path("silver"), 0, partition_by="event_date")
    # 10 quarantined records next to 300 valid ones: 3.2 %, above the 1 % allowed
    quarantined = spark.createDataFrame([("not json", "not_json", "producer-a", 0, i) for i in range(10)],
                                        "value string, reason string, topic string, partition int, offset long")
    write_batch(quarantined.withColumn("ingest_time", F.current_timestamp()), local.path("quarantine"), 0)
    with pytest.raises(ValidationFailed) as excinfo:
        run_validate(spark, local)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("2 of ")
    assert "expect_column_values_to_not_be_null(user_id): 1 row" in message
    assert "expect_column_values_to_be_between(quarantine_rate)" in message
    assert excinfo.value.report.suites == {SUITE_NAME: False, RECONCILIATION_SUITE: False}

    latest = json.loads((local.path("validation") / "latest.json").read_text())
    assert latest["status"] == "failed" and latest["rows"] == 300 and latest["timestamp"]
    assert latest["quarantine"] == {"rows": 10, "rate": round(10 / 310, 6)}
    assert [(f["suite"], f["expectation"], f["column"], f["unexpected_count"]) for f in latest["failures"]] == [
        (SUITE_NAME, "expect_column_values_to_not_be_null", "user_id", 1),
        (RECONCILIATION_SUITE, BETWEEN, "quarantine_rate", 1)]
    failing = [r for r in read_csv(local.path("reports") / "data_quality.csv") if r["success"] == "false"]
    assert [(r["column"], r["unexpected_count"], r["unexpected_percent"]) for r in failing] == [
        ("user_id", "1", f"{100 / 300:.4f}"), ("quarantine_rate", "1", "100.0000")]


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
