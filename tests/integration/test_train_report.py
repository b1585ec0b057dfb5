"""make train, make score and make report on a generated lake with ground truth, in a throwaway MLflow store.

One module-scoped lake and store; three training runs in order: the first becomes champion, a
rerun reproduces it exactly (and, tying, does not take the alias), a deliberately worse model
does not take it either. Scoring and the reports then use the champion.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.browser import open_app
from tests.conftest import make_settings
from tests.integration.train_data import generate, write_ground_truth, write_silver
from website_activity.core.config import Settings, repo_root
from website_activity.core.errors import PipelineError

pytestmark = pytest.mark.integration

EVENTS = 10000
EXPERIMENT = "test-train-report"
MODEL = "test-purchase-model"


def _state(path: Path):
    return (path.exists(), path.stat().st_mtime_ns if path.exists() else None)


@pytest.fixture(scope="module")
def user_mlflow_files():
    """The user's own MLflow store, artifacts and outputs in the repository, before the tests."""
    paths = [repo_root() / "mlflow.db", repo_root() / "mlruns", Path.cwd() / "mlflow.db",
             Path.cwd() / "mlruns", repo_root() / "data" / "features", repo_root() / "models" / "champion"]
    return {p: _state(p) for p in paths}


@pytest.fixture(scope="module")
def stage_settings(tmp_path_factory, user_mlflow_files) -> Settings:
    """Like the session settings, with this module's own lake, models, reports and MLflow store."""
    return make_settings(tmp_path_factory.mktemp("train_report"), mlflow__experiment=EXPERIMENT,
                         mlflow__log_model=True, mlflow__registered_model=MODEL)


@pytest.fixture(scope="module")
def silver_table(spark, stage_settings: Settings) -> Path:
    events = generate(stage_settings, 11, EVENTS)
    assert write_silver(spark, stage_settings, events) == EVENTS
    write_ground_truth(stage_settings, events)
    return stage_settings.path("silver")


@pytest.fixture(scope="module")
def trained(spark, stage_settings: Settings, silver_table: Path) -> dict:
    from website_activity.stages.train.train import run_train
    from website_activity.stages.validate import run_validate

    run_validate(spark, stage_settings)  # the gate: make train refuses a lake that was not validated
    return run_train(spark, stage_settings)


@pytest.fixture(scope="module")
def rerun(spark, stage_settings: Settings, trained: dict) -> dict:
    from website_activity.stages.train.train import run_train

    return run_train(spark, stage_settings)


@pytest.fixture(scope="module")
def worse(spark, stage_settings: Settings, rerun: dict) -> dict:
    """A model that cannot rank: a regularisation so strong that every coefficient is zero."""
    from website_activity.stages.train.train import run_train

    s = make_settings(stage_settings.path("data").parent, mlflow__experiment=EXPERIMENT, mlflow__log_model=True,
                      mlflow__registered_model=MODEL, train__reg_params=[100.0], train__elastic_net_params=[1.0])
    return run_train(spark, s)


def client(settings: Settings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)


def test_missing_silver_is_one_clear_error(spark, tmp_path):
    from website_activity.stages.report.report import run_report
    from website_activity.stages.score import run_score
    from website_activity.stages.train.train import run_train

    empty = make_settings(tmp_path)  # nothing ingested: no silver folder
    for run in (run_train, run_report, run_score):
        with pytest.raises(PipelineError, match=r"^no data in .*silver: run make ingest first$"):
            run(spark, empty)


def hanley_mcneil_se(auc: float, pos: int, neg: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return math.sqrt((auc * (1 - auc) + (pos - 1) * (q1 - auc * auc) + (neg - 1) * (q2 - auc * auc)) / (pos * neg))


def test_run_records_params_metrics_tags_and_input(trained: dict, stage_settings: Settings):
    c = client(stage_settings)
    experiment = c.get_experiment_by_name(EXPERIMENT)
    run = c.get_run(trained["run_id"])

    assert run.info.experiment_id == experiment.experiment_id and run.info.status == "FINISHED"
    assert experiment.artifact_location == Path(stage_settings["mlflow"]["artifact_root"]).as_uri()
    tags = run.data.tags
    assert (tags["validation_status"], tags["validation_forced"]) == ("passed", "false")
    assert tags["validation.status"] == "passed" and tags["validation.quarantine_rows"] == "0"
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
    assert tags["oracle"] == "computed"
    assert (tags["promotion"], tags["registered_version"]) == ("promoted", trained["version"])
    params = run.data.params
    assert params["rows"] == params["events"] == str(EVENTS)  # every generated event is valid
    # a few hundred training sessions: k-fold cross-validation over no and light regularisation
    assert params["search"] == "CrossValidator" and params["folds"] == "3" and len(params["config_hash"]) == 16
    assert run.info.run_name == f"{EVENTS} events, {stage_settings['profile']}"  # no produce manifest here: no seed
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert float(params["reg_param"]) in stage_settings["train"]["reg_params"]
    assert float(params["elastic_net_param"]) in stage_settings["train"]["elastic_net_params"]
    assert params["features"].split(",")[:2] == ["device_type", "day_part"]
    metrics = run.data.metrics
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1", "tp", "fp",
                 "fn", "tn", "baseline_accuracy", "baseline_log_loss", "val_roc_auc", "threshold",
                 "oracle_roc_auc", "oracle_gap", "train_rows", "validation_rows", "test_rows"):
        assert metrics[name] == pytest.approx(trained["metrics"][name]), name
    assert metrics["tp"] + metrics["fp"] + metrics["fn"] + metrics["tn"] == metrics["test_rows"]
    assert metrics["train_rows"] + metrics["validation_rows"] + metrics["test_rows"] == int(params["sessions"])
    # the input datasets: the feature table, and silver at the Delta version the gate validated
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["session_features", "silver"]
    assert json.loads(inputs[0].dataset.source)["path"] == str(stage_settings.path("features"))
    validated = json.loads((stage_settings.path("validation") / "latest.json").read_text(encoding="utf-8"))
    silver_source = json.loads(inputs[1].dataset.source)
    assert inputs[1].dataset.source_type == "delta_table"
    assert silver_source["path"] == str(stage_settings.path("silver"))
    assert silver_source["delta_table_version"] == validated["silver_version"]  # kept even when it is 0
    assert tags["silver_version"] == str(validated["silver_version"])
    written = json.loads((stage_settings.path("models") / "metrics.json").read_text(encoding="utf-8"))
    assert written["run_id"] == trained["run_id"] and written["promotion"]["promoted"] is True


def test_model_beats_the_baseline_and_stays_near_the_oracle(trained: dict, stage_settings: Settings):
    m = trained["metrics"]
    # the generator's conversion depends on cart adds, product views, device and returning users
    assert m["roc_auc"] > 0.65
    assert m["log_loss"] < m["baseline_log_loss"] and m["brier"] < m["baseline_brier"]
    assert m["f1"] > 0.0 and 0.0 < m["threshold"] < 1.0
    # the true probabilities rank better than any fitted model, up to sampling noise; the gap is
    # bounded by three standard errors of an AUC on this many test sessions (Hanley & McNeil)
    pos, neg = int(m["tp"] + m["fn"]), int(m["fp"] + m["tn"])
    bound = 3 * hanley_mcneil_se(m["oracle_roc_auc"], pos, neg)
    # the oracle covers the test sessions the generator completed: all but those the event count
    # cut short (sessions still running when the stream stopped, complete=false in ground truth)
    import pyarrow.parquet as pq
    truth = pq.read_table(stage_settings.path("ground_truth")).to_pydict()
    cut_short = truth["complete"].count(False)
    assert m["test_rows"] - cut_short <= m["oracle_sessions"] <= m["test_rows"]
    assert m["oracle_sessions"] > 0.5 * m["test_rows"]
    assert -bound < m["oracle_gap"] < bound, (m["oracle_gap"], bound)
    # the regression on the true model's own inputs is computed on the same sessions (on this
    # small 9-hour lake it is well ahead; the default week-long make all is where the target holds)
    assert m["oracle_model_roc_auc"] - m["model_oracle_sessions_roc_auc"] == pytest.approx(m["oracle_model_gap"])
    assert 0.5 < m["oracle_model_roc_auc"] <= 1.0
    assert m["nonzero_coefficients"] >= 5


def test_artifacts_and_registered_champion(trained: dict, stage_settings: Settings):
    c = client(stage_settings)
    names = {a.path for a in c.list_artifacts(trained["run_id"], "evaluation")}
    assert names == {f"evaluation/{n}" for n in (
        "roc_curve.png", "pr_curve.png", "confusion_matrix.png", "calibration.png", "coefficients.png",
        "coefficients.csv", "search.csv", "test_predictions.csv")}
    local = Path(c.download_artifacts(trained["run_id"], "evaluation/coefficients.csv"))
    rows = list(csv.DictReader(local.open(encoding="utf-8")))
    assert rows[0]["feature"] == "(intercept)"
    by_name = {r["feature"]: r for r in rows}
    # a cart add makes a purchase more likely: its odds ratio is above 1, and it is exp(coefficient)
    cart = by_name["n_cart_adds"]
    assert float(cart["odds_ratio"]) > 1.0
    assert float(cart["odds_ratio"]) == pytest.approx(math.exp(float(cart["coefficient"])), rel=1e-6)

    version = c.get_model_version(MODEL, trained["version"])
    assert version.run_id == trained["run_id"]
    assert str(c.get_model_version_by_alias(MODEL, "champion").version) == trained["version"]
    assert version.tags["promotion"] == "promoted"
    # the logged model has a signature and an input example
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{MODEL}/{trained['version']}")
    assert [i.name for i in info.signature.inputs][:2] == ["device_type", "day_part"]
    assert info.saved_input_example_info is not None
    # exported to models/champion: the Spark pipeline and its card
    card = json.loads((stage_settings.path("models") / "champion" / "card.json").read_text(encoding="utf-8"))
    assert (card["run_id"], card["version"]) == (trained["run_id"], trained["version"])
    assert card["metrics"]["roc_auc"] == pytest.approx(trained["metrics"]["roc_auc"])
    assert (stage_settings.path("models") / "champion" / "model" / "metadata").is_dir()


def test_exported_model_loads_and_predicts_with_the_tuned_threshold(spark, trained: dict,
                                                                    stage_settings: Settings):
    from pyspark.ml import PipelineModel

    from website_activity.stages.features import read_features

    model = PipelineModel.load(str(stage_settings.path("models") / "champion" / "model"))
    assert model.stages[-1].getThreshold() == pytest.approx(trained["threshold"])
    scored = model.transform(read_features(spark, stage_settings).limit(30)).select("prediction").collect()
    assert len(scored) == 30 and {r["prediction"] for r in scored} <= {0.0, 1.0}


def test_same_lake_and_seed_reproduce_metrics_and_coefficients(trained: dict, rerun: dict):
    assert rerun["run_id"] != trained["run_id"]
    for name, value in trained["metrics"].items():
        assert rerun["metrics"][name] == pytest.approx(value, abs=1e-9), name
    a, b = trained["coefficients"], rerun["coefficients"]
    assert list(a["feature"]) == list(b["feature"])
    assert (a["coefficient"] - b["coefficient"]).abs().max() < 1e-9
    # a tie does not move the alias: the champion scored the same validation split as the rerun
    assert rerun["promotion"].promoted is False and "does not beat" in rerun["promotion"].reason
    assert rerun["metrics"]["champion_val_roc_auc"] == trained["metrics"]["val_roc_auc"]
    assert "on the same validation split" in rerun["promotion"].reason


def test_a_worse_model_does_not_take_champion(worse: dict, trained: dict, stage_settings: Settings):
    c = client(stage_settings)
    assert worse["metrics"]["val_roc_auc"] < trained["metrics"]["val_roc_auc"]
    assert worse["promotion"].promoted is False
    assert str(c.get_model_version_by_alias(MODEL, "champion").version) == trained["version"]
    assert c.get_run(worse["run_id"]).data.tags["promotion"] == "kept"
    assert c.get_model_version(MODEL, worse["version"]).tags["promotion_reason"] == worse["promotion"].reason
    card = json.loads((stage_settings.path("models") / "champion" / "card.json").read_text(encoding="utf-8"))
    assert card["version"] == trained["version"]  # the export is still the champion's


def test_score_writes_predictions_of_the_champion(spark, worse: dict, trained: dict, stage_settings: Settings):
    from website_activity.stages.features import read_features
    from website_activity.stages.score import PREDICTION_COLUMNS, run_score

    r = run_score(spark, stage_settings)

    assert r["version"] == trained["version"]  # the champion, not the latest version
    sessions = read_features(spark, stage_settings)
    path = stage_settings.path("reports") / "predictions.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(PREDICTION_COLUMNS)
    assert len(rows) == r["rows"] == sessions.count()
    assert [row["session_id"] for row in rows] == sorted(row["session_id"] for row in rows)
    assert all(0.0 <= float(row["probability"]) <= 1.0 for row in rows)
    assert {row["prediction"] for row in rows} == {"0", "1"}
    labels = {x["session_id"]: x["label"] for x in sessions.select("session_id", "label").collect()}
    assert all(int(row["actual"]) == labels[row["session_id"]] for row in rows)
    # the prediction is the probability against the champion's tuned threshold
    t = trained["threshold"]
    assert all((float(row["probability"]) >= t - 1e-6) == (row["prediction"] == "1") for row in rows
               if abs(float(row["probability"]) - t) > 1e-5)
    assert spark.read.parquet(str(stage_settings.path("predictions"))).count() == r["rows"]


def test_report_shows_the_runs_and_the_champion(spark, worse: dict, trained: dict, stage_settings: Settings):
    from website_activity.stages.report.report import (COEFFICIENTS_HEADER, MODEL_METRICS_HEADER, REPORT_FILES,
                                                       run_report)

    paths = run_report(spark, stage_settings)

    out = stage_settings.path("reports")
    assert sorted(p.name for p in paths) == sorted(REPORT_FILES) and all(p.parent == out for p in paths)
    tables = {p.name: list(csv.DictReader(p.open(encoding="utf-8", newline=""))) for p in paths
              if p.suffix == ".csv"}
    headers = {p.name: p.read_text(encoding="utf-8").splitlines()[0] for p in paths if p.suffix == ".csv"}
    assert headers["traffic_by_page.csv"] == "page_url,events,users,sessions"
    assert headers["traffic_by_device.csv"] == "device_type,events,users,sessions,share"
    assert headers["model_metrics.csv"] == ",".join(MODEL_METRICS_HEADER)
    assert sum(int(r["events"]) for r in tables["traffic_by_page.csv"]) == EVENTS
    devices = tables["traffic_by_device.csv"]
    assert sum(int(r["events"]) for r in devices) == EVENTS
    assert sum(float(r["share"]) for r in devices) == pytest.approx(1.0, abs=1e-3)

    runs = tables["model_metrics.csv"]
    assert len(runs) == 3  # trained, rerun, worse
    mine = [r for r in runs if r["run_id"] == trained["run_id"]]
    assert len(mine) == 1
    assert float(mine[0]["roc_auc"]) == pytest.approx(trained["metrics"]["roc_auc"])
    assert float(mine[0]["oracle_roc_auc"]) == pytest.approx(trained["metrics"]["oracle_roc_auc"])
    assert float(mine[0]["oracle_gap"]) == pytest.approx(trained["metrics"]["oracle_gap"])
    assert mine[0]["promotion"] == "promoted" and mine[0]["start_time"].endswith("Z")
    # exactly one run holds the champion version, and it is the one the registry names
    champion = client(stage_settings).get_model_version_by_alias(MODEL, "champion")
    assert [r["run_id"] for r in runs if r["champion"] == "true"] == [champion.run_id]
    assert worse["run_id"] != champion.run_id

    coefs = tables["coefficients.csv"]
    assert headers["coefficients.csv"] == ",".join(COEFFICIENTS_HEADER)
    assert {r["run_id"] for r in coefs} == {champion.run_id} and {r["champion"] for r in coefs} == {"true"}
    assert [int(r["rank"]) for r in coefs] == list(range(1, len(coefs) + 1))
    magnitudes = [abs(float(r["coefficient"])) for r in coefs]
    assert magnitudes == sorted(magnitudes, reverse=True) and magnitudes[0] > 0
    assert all(float(r["odds_ratio"]) == pytest.approx(math.exp(float(r["coefficient"])), rel=1e-4) for r in coefs)
    vs = {(r["v"], r["measure"]): r for r in tables["five_vs.csv"]}
    champion_row = next(r for r in runs if r["champion"] == "true")
    assert float(vs[("value", "ROC AUC lift over chance")]["value"]) == pytest.approx(
        float(champion_row["roc_auc"]) - 0.5, abs=1e-5)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert 'alt="ROC curve" src="data:image/png;base64,' in html  # the run's own plot, embedded
    assert f"/runs/{champion.run_id}" in html  # the link to the run in the MLflow UI


def test_mlflow_ui_answers_lists_the_run_and_opens_on_the_training_runs(trained: dict, stage_settings: Settings,
                                                                        tmp_path):
    from website_activity.devtools.broker import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    env.update(WA__MLFLOW__TRACKING_URI=stage_settings.tracking_uri,
               WA__MLFLOW__ARTIFACT_ROOT=str(stage_settings.artifact_root),
               WA__MLFLOW__EXPERIMENT=EXPERIMENT, WA__MLFLOW__REGISTERED_MODEL=MODEL)
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen([sys.executable, str(repo_root() / "scripts" / "mlflow_ui.py"), "--ui-port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, health = time.monotonic() + 300, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"{base}/health", timeout=30)
                break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still starting
                time.sleep(0.5)
        assert health is not None and health.status_code == 200, (tmp_path / "ui.log").read_text()[-2000:]
        experiment = requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name",
                                  params={"experiment_name": EXPERIMENT}, timeout=60).json()["experiment"]
        found = requests.post(f"{base}/api/2.0/mlflow/runs/search",
                              json={"experiment_ids": [experiment["experiment_id"]]}, timeout=60).json()
        assert trained["run_id"] in {r["info"]["run_id"] for r in found["runs"]}
        # the address make mlflow-ui prints opens the experiment on its training runs (not MLflow
        # 3's GenAI overview), in a real browser
        printed = (tmp_path / "ui.log").read_text()
        link = f"{base}/#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning"
        assert f"mlflow-ui: training runs: {link}" in printed
        assert f"mlflow-ui: registered model: {base}/#/models/{MODEL}" in printed
        view = open_app(link, f"{EVENTS} events", tmp_path / "mlflow_ui.png")
        assert "/runs" in view.url and "overview" not in view.url, view.url
        assert "Model training" in view.text and f"{EVENTS} events, {stage_settings['profile']}" in view.text
    finally:
        os.killpg(proc.pid, 15)  # the server and its workers: the group this test started
        proc.wait(timeout=30)
        log.close()


def test_user_mlflow_files_untouched(trained: dict, worse: dict, user_mlflow_files):
    # runs the module's training first (fixtures), then checks nothing leaked into the repository
    assert {p: _state(p) for p in user_mlflow_files} == user_mlflow_files
