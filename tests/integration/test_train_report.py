"""Train and report on a generated silver table, with a throwaway MLflow store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import make_settings
from website_activity.config import Settings, repo_root
from website_activity.errors import PipelineError
from website_activity.generator import EventGenerator
from website_activity.ingest import parse_records, split_valid

pytestmark = pytest.mark.integration

EVENTS = 6000


def _state(path: Path):
    return (path.exists(), path.stat().st_mtime_ns if path.exists() else None)


@pytest.fixture(scope="module")
def user_mlflow_files():
    """The user's own MLflow store and artifacts in the repository, before the tests."""
    paths = [repo_root() / "mlflow.db", repo_root() / "mlruns", Path.cwd() / "mlflow.db",
             Path.cwd() / "mlruns"]
    return {p: _state(p) for p in paths}


@pytest.fixture(scope="module")
def stage_settings(tmp_path_factory, user_mlflow_files) -> Settings:
    """Like the session settings, with this module's own lake, models, reports and MLflow store.

    Other integration tests write the session's silver table too: a private one keeps the
    expected counts ours.
    """
    return make_settings(tmp_path_factory.mktemp("train_report"),
                         mlflow__experiment="test-train-report", mlflow__log_model=True)


@pytest.fixture(scope="module")
def silver_table(spark, stage_settings: Settings) -> Path:
    s = stage_settings
    gen = EventGenerator.from_settings(s, 11, "producer-a")
    records = [(json.dumps(e), "producer-a", i % 2, i) for i, e in enumerate(gen.events(EVENTS))]
    raw = spark.createDataFrame(records, "value string, topic string, partition int, offset long")
    silver, _ = split_valid(parse_records(raw, s), s)
    path = s.path("silver")
    silver.write.mode("overwrite").partitionBy("event_date").parquet(str(path))
    return path


@pytest.fixture(scope="module")
def trained(spark, stage_settings: Settings, silver_table: Path) -> dict:
    from website_activity.train import run_train
    from website_activity.validate import run_validate

    run_validate(spark, stage_settings)  # the gate: make train refuses a lake that was not validated
    return run_train(spark, stage_settings)


def test_missing_silver_is_one_clear_error(spark, tmp_path):
    from website_activity.report import run_report
    from website_activity.train import run_train

    empty = make_settings(tmp_path)  # nothing ingested: no silver folder
    for run in (run_train, run_report):
        with pytest.raises(PipelineError, match=r"^no data in .*silver: run make ingest first$"):
            run(spark, empty)


def test_run_is_recorded_with_params_and_metrics(trained: dict, stage_settings: Settings):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(stage_settings.tracking_uri)
    experiment = client.get_experiment_by_name("test-train-report")
    run = client.get_run(trained["run_id"])

    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.status == "FINISHED"
    assert (run.data.tags["validation_status"], run.data.tags["validation_forced"]) == ("passed", "false")
    assert experiment.artifact_location == (Path(stage_settings["mlflow"]["artifact_root"])).as_uri()
    assert run.data.params["rows"] == str(EVENTS)  # every generated event is valid
    assert set(run.data.params) >= {"reg_param", "elastic_net_param", "max_iter", "seed",
                                    "test_fraction", "rows", "sessions"}
    metrics = run.data.metrics
    for name in ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "baseline_accuracy",
                 "positive_rate", "train_rows", "test_rows"):
        assert metrics[name] == pytest.approx(trained["metrics"][name]), name
    assert metrics["train_rows"] + metrics["test_rows"] == int(run.data.params["sessions"])
    # the generator's conversion depends on cart adds and product views: a real model beats chance
    assert metrics["roc_auc"] > 0.6

    written = json.loads((stage_settings.path("models") / "metrics.json").read_text(encoding="utf-8"))
    assert written["run_id"] == trained["run_id"]
    assert written["metrics"] == pytest.approx(trained["metrics"])


def test_model_is_logged_and_loads(spark, trained: dict, stage_settings: Settings, silver_table):
    import mlflow
    import mlflow.spark

    from website_activity.train import session_features

    mlflow.set_tracking_uri(stage_settings.tracking_uri)
    artifacts = Path(stage_settings["mlflow"]["artifact_root"])
    assert any(artifacts.rglob("MLmodel")), "the model's files belong under mlflow.artifact_root"

    model = mlflow.spark.load_model(trained["model_uri"])
    features = session_features(spark.read.parquet(str(silver_table))).limit(20)
    scored = model.transform(features).select("session_id", "probability", "prediction").collect()
    assert len(scored) == 20
    assert {r["prediction"] for r in scored} <= {0.0, 1.0}


def test_report_writes_the_three_csvs(spark, trained: dict, stage_settings: Settings):
    from website_activity.report import run_report

    paths = run_report(spark, stage_settings)

    out = stage_settings.path("reports")
    assert [p.name for p in paths] == ["traffic_by_page.csv", "traffic_by_device.csv",
                                       "model_metrics.csv"]
    assert all(p.parent == out for p in paths)
    tables = {p.name: list(csv.DictReader(p.open(encoding="utf-8", newline=""))) for p in paths}
    headers = {p.name: p.read_text(encoding="utf-8").splitlines()[0] for p in paths}
    assert headers == {
        "traffic_by_page.csv": "page_url,events,users,sessions",
        "traffic_by_device.csv": "device_type,events,users,sessions,share",
        "model_metrics.csv": "run_id,start_time,status,roc_auc,pr_auc,accuracy,f1,reg_param,"
                             "elastic_net_param,max_iter,seed,test_fraction,rows,sessions",
    }
    # every event is counted once per page and once per device
    assert sum(int(r["events"]) for r in tables["traffic_by_page.csv"]) == EVENTS
    devices = tables["traffic_by_device.csv"]
    assert sum(int(r["events"]) for r in devices) == EVENTS
    assert {r["device_type"] for r in devices} <= {"desktop", "tablet", "mobile"}
    assert sum(float(r["share"]) for r in devices) == pytest.approx(1.0, abs=1e-3)

    runs = tables["model_metrics.csv"]
    mine = [r for r in runs if r["run_id"] == trained["run_id"]]
    assert len(mine) == 1
    assert float(mine[0]["roc_auc"]) == pytest.approx(trained["metrics"]["roc_auc"])
    assert mine[0]["start_time"].endswith("+00:00")


def test_user_mlflow_files_untouched(trained: dict, user_mlflow_files):
    # runs the module's training first (fixture), then checks nothing leaked into the repository
    assert {p: _state(p) for p in user_mlflow_files} == user_mlflow_files
