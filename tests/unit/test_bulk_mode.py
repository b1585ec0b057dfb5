"""Bulk mode: a large backlog starts the driver JVM with ``spark.bulk_driver_java_options``."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from tests.conftest import make_settings
from website_activity.adapters.spark import driver_java_options, spark_java
from website_activity.stages.ingest import bulk_settings, checkpoint_offsets, records_waiting

TOPICS = {"producer-a": {0: (0, 600), 1: (0, 400)}, "producer-b": {0: (100, 1100)}}


def spark_checkpoint(folder: Path, batches: dict[int, dict], committed: list[int]) -> None:
    """Spark's files for ``batches`` (id -> the Kafka source's offsets), ``committed`` of them."""
    (folder / "offsets").mkdir(parents=True)
    (folder / "commits").mkdir()
    for batch_id, offsets in batches.items():
        (folder / "offsets" / str(batch_id)).write_text(
            "v1\n" + json.dumps({"batchWatermarkMs": 0, "batchTimestampMs": 1, "conf": {}}) + "\n" + json.dumps(offsets))
    for batch_id in committed:
        (folder / "commits" / str(batch_id)).write_text("v1\n{\"nextBatchWatermarkMs\":0}")


def test_without_a_checkpoint_every_record_is_waiting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert checkpoint_offsets(settings.path("checkpoints") / "ingest") is None
    assert records_waiting(settings, TOPICS) == 600 + 400 + 1000


def test_what_the_last_committed_batch_read_is_not_waiting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    batches = {0: {"producer-a": {"0": 200, "1": 400}, "producer-b": {"0": 50}},  # 50: below the topic's first offset
               1: {"producer-a": {"0": 600, "1": 400}, "producer-b": {"0": 1100}}}  # planned, not committed
    spark_checkpoint(settings.path("checkpoints") / "ingest", batches, committed=[0])
    assert checkpoint_offsets(settings.path("checkpoints") / "ingest") == {"producer-a": {0: 200, 1: 400},
                                                                          "producer-b": {0: 50}}
    # producer-a: 400 + 0; producer-b: from its first offset (100: the older records are gone)
    assert records_waiting(settings, TOPICS) == 400 + 1000


def test_a_checkpoint_file_that_is_not_spark_s_counts_as_no_checkpoint(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    folder = settings.path("checkpoints") / "ingest"
    spark_checkpoint(folder, {0: {"producer-a": {"0": 200}}}, committed=[0])
    (folder / "offsets" / "0").write_text("v1\n{not json")
    assert checkpoint_offsets(folder) is None
    assert records_waiting(settings, TOPICS) == 600 + 400 + 1000


def test_bulk_mode_from_spark_bulk_records_on(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, spark__bulk_records=1000)
    assert bulk_settings(settings, 999) is None
    bulk = bulk_settings(settings, 1000)
    assert bulk is not None
    assert bulk["spark"]["driver_java_options"] == settings["spark"]["bulk_driver_java_options"]
    assert bulk["spark"]["driver_java_options"] != settings["spark"]["driver_java_options"]
    assert settings["spark"]["driver_java_options"] == make_settings(tmp_path)["spark"]["driver_java_options"]
    assert bulk_settings(make_settings(tmp_path, spark__bulk_records=0), 10**9) is None


def test_the_jvm_takes_the_bulk_options_and_their_directives(tmp_path: Path) -> None:
    settings = bulk_settings(make_settings(tmp_path, spark__bulk_records=1), 1)
    options = driver_java_options(settings)
    assert "{root}" not in options and str(settings.root / "conf" / "jvm" / "c2-libraries.json") in options
    java = spark_java(settings)
    ok = subprocess.run([java, *shlex.split(options), "-version"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "2 compiler directives added" in ok.stdout + ok.stderr
    # a directives file the JVM cannot parse stops it: the check above would see it
    broken = tmp_path / "broken.json"
    broken.write_text("[ { match: [\"*.*\"], c2: { Exclude: maybe } } ]")
    bad = subprocess.run([java, *shlex.split(options.replace(str(settings.root / "conf/jvm/c2-libraries.json"),
                                                             str(broken))), "-version"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
