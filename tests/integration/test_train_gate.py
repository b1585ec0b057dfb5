"""The quality gate stops training: never validated, failed or stale lakes are refused unless forced."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner
from pyspark.sql import functions as F

from tests.conftest import make_settings
from website_activity.adapters.lake import read_table, write_batch
from website_activity.core.config import Settings, repo_root
from website_activity.core.errors import PipelineError, ValidationFailed
from website_activity.simulate.generator import EventGenerator
from website_activity.stages.ingest import parse_records, rules_of, split_valid
from website_activity.stages.train.gate import check_gate
from website_activity.stages.train.train import run_train
from website_activity.stages.validate import run_validate

pytestmark = pytest.mark.integration

EVENTS = 8000
EXPERIMENT = "test-train-gate"


@pytest.fixture(scope="module")
def events(spark, settings):
    gen = EventGenerator.from_settings(settings, 5, "producer-a")
    raw = spark.createDataFrame([(json.dumps(e), "producer-a", i % 2, i) for i, e in enumerate(gen.events(EVENTS))],
                                "value string, topic string, partition int, offset long")
    silver, _ = split_valid(parse_records(raw, rules_of(settings)), rules_of(settings))
    silver = silver.cache()
    assert silver.count() == EVENTS
    yield silver
    silver.unpersist()


@pytest.fixture
def lake(tmp_path, events) -> Settings:
    """A lake of its own (silver written as ingest writes it), with its own MLflow store."""
    s = make_settings(tmp_path, mlflow__experiment=EXPERIMENT, mlflow__log_model=False)
    write_batch(events, s.path("silver"), 0, partition_by="event_date")
    return s


def tags(settings: Settings, run_id: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.tracking_uri).get_run(run_id).data.tags


def runs(settings: Settings) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


def train_script(lake: Settings, monkeypatch, *args: str):
    """`make train` as the Makefile runs it (scripts/train.py), on this test's lake."""
    for key in ("silver", "quarantine", "validation", "models", "features", "ground_truth", "runs"):
        monkeypatch.setenv(f"WA__PATHS__{key.upper()}", str(lake.path(key)))
    monkeypatch.setenv("WA__MLFLOW__TRACKING_URI", lake.tracking_uri)
    monkeypatch.setattr("website_activity.cli.setup_logging", lambda *a, **k: None)  # pytest captures logs
    spec = importlib.util.spec_from_file_location("train_script", repo_root() / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return CliRunner().invoke(module.main, list(args))


def test_a_lake_never_validated_is_refused(spark, lake, monkeypatch) -> None:
    assert check_gate(lake).status == "missing"
    with pytest.raises(PipelineError, match=r"^refusing to train: the lake was never validated .*make train FORCE=1"):
        run_train(spark, lake)
    # the script refuses before starting Spark, in one line, with the pipeline's exit code
    result = train_script(lake, monkeypatch)
    assert result.exit_code == 2
    assert result.stderr.startswith("train: error: refusing to train: the lake was never validated")
    assert result.stderr.count("\n") == 1
    assert runs(lake) == 0


def test_a_failed_validation_stops_training_and_force_tags_the_run(spark, lake, monkeypatch) -> None:
    # the lake holds a duplicated event id: the gate fails
    first = lake.path("silver")
    dup = read_table(spark, lake, "silver").limit(1).withColumn("offset", F.lit(10**9).cast("long"))
    write_batch(dup, first, 1, partition_by="event_date")
    with pytest.raises(ValidationFailed):
        run_validate(spark, lake)
    gate = check_gate(lake)
    assert gate.status == "failed" and "expect_column_values_to_be_unique(event_id)" in gate.message

    with pytest.raises(PipelineError, match=r"^refusing to train: the latest validation .* failed 1 expectation, "
                                            r"first expect_column_values_to_be_unique\(event_id\)"):
        run_train(spark, lake)
    result = train_script(lake, monkeypatch)
    assert result.exit_code == 2 and "refusing to train" in result.stderr
    assert runs(lake) == 0

    forced = run_train(spark, lake, force=True)
    assert tags(lake, forced["run_id"])["validation_forced"] == "true"
    assert tags(lake, forced["run_id"])["validation_status"] == "failed"
    assert runs(lake) == 1


def test_a_lake_changed_since_validation_is_stale(spark, lake, events) -> None:
    run_validate(spark, lake)
    assert check_gate(lake).passed
    # a later ingest adds a batch: what would be trained on was not validated
    write_batch(events.limit(10).withColumn("event_id", F.expr("uuid()")), lake.path("silver"), 1,
                partition_by="event_date")
    gate = check_gate(lake)
    assert gate.status == "stale"
    with pytest.raises(PipelineError, match="^refusing to train: the lake changed since its validation"):
        run_train(spark, lake)
    # validating again lets training go on, and the run says so
    run_validate(spark, lake)
    trained = run_train(spark, lake)
    assert trained["validation"] == "passed"
    assert {k: v for k, v in tags(lake, trained["run_id"]).items() if k.startswith("validation_")} == {
        "validation_status": "passed", "validation_forced": "false"}
