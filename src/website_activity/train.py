"""Train: session features from silver -> Spark ML logistic regression, tracked in MLflow.

The question the model answers: *will this session end in a purchase?* Each session becomes
one row of features built only from what happened before the purchase (the purchase is the
label, never a feature). Sessions are split into train and test by a hash of their id, so the
split does not depend on how Spark partitions the data. One MLflow run records the
parameters, the test metrics and (``mlflow.log_model``) the fitted ``PipelineModel``.

:func:`session_features` and :func:`split_sessions` are pure transforms, unit-tested on inline
DataFrames; the reading, fitting and logging live in :func:`run_train`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.config import Settings
from website_activity.errors import PipelineError, first_line
from website_activity.lake import read_silver
from website_activity.validate import require_gate

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

CATEGORICAL = ("device_type", "browser")
NUMERIC = ("n_events", "n_views", "n_clicks", "n_scrolls", "n_cart_adds", "n_pages",
           "n_product_views", "duration_s", "returning")
"""The model's inputs: the one-hot encoded categoricals and these numeric features."""

FEATURE_COLUMNS = ("session_id", "user_id", *CATEGORICAL, *NUMERIC, "label")


# -- pure transforms ------------------------------------------------------------------------
def session_features(silver: "DataFrame") -> "DataFrame":
    """One row of model features per session, and its label.

    Only events strictly before the session's first purchase count (the purchase itself and
    anything after it would leak the label). A session with no such event (a lone purchase)
    has nothing to predict from and is left out.

    Columns:
        session_id: The session.
        user_id: Its user (for inspection; not a model input).
        device_type: The device of the session's first event.
        browser: The browser of the session's first event.
        n_events: Events before the purchase.
        n_views: ``view`` events (one per page visited).
        n_clicks: ``click`` events.
        n_scrolls: ``scroll`` events.
        n_cart_adds: ``add_to_cart`` events.
        n_pages: Distinct ``page_url`` values.
        n_product_views: ``view`` events on product pages (``page_url`` contains ``/product/``).
        duration_s: Seconds from the first to the last counted event (0.0 for one event).
        returning: 1.0 if the same user has a session that started strictly earlier (by first
            event time) anywhere in the input, else 0.0.
        label: 1.0 if the session has a ``purchase`` event, else 0.0.

    Args:
        silver: Events with at least ``session_id``, ``user_id``, ``page_url``, ``timestamp``,
            ``action_type``, ``device_type`` and ``browser``.

    Returns:
        A DataFrame with the columns above, in that order (counts are longs, the rest doubles
        or strings).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    purchases = (silver.where(F.col("action_type") == "purchase")
                 .groupBy("session_id").agg(F.min("timestamp").alias("purchase_time")))
    before = (
        silver.join(purchases, "session_id", "left")
        .where((F.col("action_type") != "purchase")
               & (F.col("purchase_time").isNull() | (F.col("timestamp") < F.col("purchase_time"))))
    )

    def count_action(action: str) -> Any:
        return F.count(F.when(F.col("action_type") == action, True))

    sessions = before.groupBy("session_id").agg(
        F.min("user_id").alias("user_id"),
        F.min_by("device_type", "timestamp").alias("device_type"),
        F.min_by("browser", "timestamp").alias("browser"),
        F.count(F.lit(1)).alias("n_events"),
        count_action("view").alias("n_views"),
        count_action("click").alias("n_clicks"),
        count_action("scroll").alias("n_scrolls"),
        count_action("add_to_cart").alias("n_cart_adds"),
        # collect_set, not countDistinct: sessions are short, and it spares an Expand and a shuffle
        F.size(F.collect_set("page_url")).cast("long").alias("n_pages"),
        F.count(F.when((F.col("action_type") == "view") & F.col("page_url").contains("/product/"),
                       True)).alias("n_product_views"),
        F.min("timestamp").alias("start_time"),
        F.max("timestamp").alias("end_time"),
        F.max("purchase_time").isNotNull().alias("purchased"),
    )
    first_session = F.min("start_time").over(Window.partitionBy("user_id"))
    return sessions.select(
        "session_id", "user_id", *CATEGORICAL,
        "n_events", "n_views", "n_clicks", "n_scrolls", "n_cart_adds", "n_pages", "n_product_views",
        ((F.unix_micros("end_time") - F.unix_micros("start_time")) / 1e6).alias("duration_s"),
        (F.col("start_time") > first_session).cast("double").alias("returning"),
        F.col("purchased").cast("double").alias("label"),
    )


def _in_test(test_fraction: float, seed: int) -> Any:
    from pyspark.sql import functions as F

    # pmod, not abs(...) % n: abs(Long.MinValue) overflows (an error under ANSI mode).
    bucket = F.pmod(F.xxhash64(F.col("session_id"), F.lit(seed)), F.lit(1000))
    return bucket < F.lit(int(round(test_fraction * 1000)))


def split_sessions(features: "DataFrame", test_fraction: float,
                   seed: int) -> tuple["DataFrame", "DataFrame"]:
    """Split sessions into (train, test) by a hash of ``session_id`` and ``seed``.

    The same session lands on the same side whatever the partitioning, the row order or the
    other rows: a rerun on more data keeps earlier test sessions in the test set.

    Args:
        features: Rows with a ``session_id`` column.
        test_fraction: Expected share of sessions in the test set (in steps of 0.001).
        seed: Changes the split.
    """
    in_test = _in_test(test_fraction, seed)
    return features.where(~in_test), features.where(in_test)


def build_pipeline(train_conf: dict[str, Any]) -> Any:
    """The Spark ML pipeline: index + one-hot the categoricals, assemble, scale, regress."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    indexed = [f"{c}_index" for c in CATEGORICAL]
    encoded = [f"{c}_onehot" for c in CATEGORICAL]
    return Pipeline(stages=[
        # "keep": a device or browser unseen in training gets its own index, not an error.
        StringIndexer(inputCols=list(CATEGORICAL), outputCols=indexed, handleInvalid="keep"),
        OneHotEncoder(inputCols=indexed, outputCols=encoded),
        VectorAssembler(inputCols=[*encoded, *NUMERIC], outputCol="raw_features"),
        StandardScaler(inputCol="raw_features", outputCol="features"),
        LogisticRegression(featuresCol="features", labelCol="label", threshold=0.5,
                           regParam=float(train_conf["reg_param"]),
                           elasticNetParam=float(train_conf["elastic_net_param"]),
                           maxIter=int(train_conf["max_iter"])),
    ])


def evaluate(predictions: "DataFrame", train_positive_rate: float) -> dict[str, float]:
    """Test metrics from a scored DataFrame (``label``, ``prediction``, ``rawPrediction``).

    ``baseline_accuracy`` is the accuracy of always predicting the training set's majority class.
    """
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F

    label, pred = F.col("label") == 1.0, F.col("prediction") == 1.0
    c = predictions.agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when(label, True)).alias("pos"),
        F.count(F.when(label & pred, True)).alias("tp"),
        F.count(F.when(~label & pred, True)).alias("fp"),
        F.count(F.when(label & ~pred, True)).alias("fn"),
    ).first()
    n, pos, tp, fp, fn = c["n"], c["pos"], c["tp"], c["fp"], c["fn"]
    tn = n - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    positive_rate = pos / n
    binary = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction")
    return {
        "roc_auc": binary.evaluate(predictions, {binary.metricName: "areaUnderROC"}),
        "pr_auc": binary.evaluate(predictions, {binary.metricName: "areaUnderPR"}),
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positive_rate": positive_rate,
        "baseline_accuracy": positive_rate if train_positive_rate >= 0.5 else 1.0 - positive_rate,
    }


# -- the I/O edge -----------------------------------------------------------------------------
def artifact_location(settings: Settings) -> str:
    """``mlflow.artifact_root`` as a URI: a local folder becomes ``file://``, a URI stays as is."""
    root = settings["mlflow"]["artifact_root"]
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", root):  # s3://, mlflow-artifacts:/, file:///
        return root
    return settings.artifact_root.resolve().as_uri()


def ensure_experiment(settings: Settings) -> str:
    """The id of ``mlflow.experiment``, created with ``artifact_location(settings)`` if new.

    The artifact location is explicit because, without it, MLflow with a SQLite store puts
    artifacts in ``./mlruns`` relative to the working directory.

    Raises:
        PipelineError: The tracking store cannot be reached, or the experiment was deleted.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = settings["mlflow"]["experiment"]
    location = artifact_location(settings)
    client = MlflowClient(settings.tracking_uri)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name, artifact_location=location)
            except MlflowException:  # created meanwhile by another process
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
    except MlflowException as exc:
        raise PipelineError(f"MLflow at {settings.tracking_uri}: {first_line(exc)}") from exc
    if experiment.lifecycle_stage == "deleted":
        raise PipelineError(
            f"MLflow experiment '{name}' is deleted: restore it (mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}) or set another mlflow.experiment")
    if experiment.artifact_location != location:
        log.warning("experiment '%s' keeps its artifact location %s (mlflow.artifact_root is %s)",
                    name, experiment.artifact_location, location)
    return experiment.experiment_id


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    # Explicit requirements spare MLflow from inferring them, which reloads the model in a
    # subprocess with a second JVM: 39 s instead of 4 s for log_model on 2 cores.
    return [f"{name}=={version(name)}" for name in ("pyspark", "mlflow", "numpy", "pandas")]


def run_train(spark: "SparkSession", settings: Settings, force: bool = False) -> dict[str, Any]:
    """Build session features from silver, fit and evaluate the model, record one MLflow run.

    Only on a lake that passed the quality gate (``make validate``) and has not changed since,
    unless ``force``. The run is tagged ``validation_status`` (``passed``, ``failed``,
    ``missing`` or ``stale``) and ``validation_forced`` (``true``/``false``). Also writes
    ``metrics.json`` (run id, parameters, metrics) into ``paths.models``.

    Args:
        spark: The session.
        settings: Gives ``train.*``, ``mlflow.*`` and the paths.
        force: Train even when the latest validation failed, is missing or is stale.

    Returns:
        ``run_id``, ``experiment_id``, ``model_uri`` (``None`` when ``mlflow.log_model`` is
        false), ``params``, ``metrics`` and ``seconds`` (``fit``, ``log_model``).

    Raises:
        PipelineError: Silver is missing, the quality gate did not pass (without ``force``), a
            split lacks one of the classes, or MLflow cannot be reached.
    """
    import mlflow
    import mlflow.spark
    from pyspark.sql import functions as F

    conf = settings["train"]
    seed, test_fraction = int(conf["seed"]), float(conf["test_fraction"])
    silver = read_silver(spark, settings)
    gate = require_gate(settings, force)
    experiment_id = ensure_experiment(settings)  # an unreachable MLflow fails before the Spark work
    rows = silver.count()
    features = session_features(silver).persist()
    try:
        train, test = split_sessions(features, test_fraction, seed)
        sides = (features.groupBy(_in_test(test_fraction, seed).alias("is_test"))
                 .agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("pos")).collect())
        counts = {r["is_test"]: (r["n"], int(r["pos"])) for r in sides}
        train_n, train_pos = counts.get(False, (0, 0))
        test_n, test_pos = counts.get(True, (0, 0))
        for split, n, pos in (("train", train_n, train_pos), ("test", test_n, test_pos)):
            if pos == 0 or pos == n:
                raise PipelineError(
                    f"the {split} split has {n} sessions, {pos} with a purchase: both classes are "
                    f"needed (ingest more events)")
        log.info("%d events, %d sessions: %d to train, %d to test", rows, train_n + test_n,
                 train_n, test_n)

        started = time.monotonic()
        model: PipelineModel = build_pipeline(conf).fit(train)
        fit_seconds = time.monotonic() - started
        predictions = model.transform(test).persist()
        try:
            metrics = evaluate(predictions, train_pos / train_n)
        finally:
            predictions.unpersist()
    finally:
        features.unpersist()
    metrics.update(train_rows=float(train_n), test_rows=float(test_n))
    log.info("fitted in %.1f s; test ROC AUC %.3f, accuracy %.3f (baseline %.3f)", fit_seconds,
             metrics["roc_auc"], metrics["accuracy"], metrics["baseline_accuracy"])

    params = {"reg_param": conf["reg_param"], "elastic_net_param": conf["elastic_net_param"],
              "max_iter": conf["max_iter"], "seed": seed, "test_fraction": test_fraction,
              "rows": rows, "sessions": train_n + test_n}
    mlflow.set_tracking_uri(settings.tracking_uri)
    log_seconds, model_uri = 0.0, None
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags({"stage": "train", "profile": settings["profile"],
                         "validation_status": gate.status, "validation_forced": str(force).lower()})
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_metric("fit_seconds", fit_seconds)
        if settings["mlflow"]["log_model"]:
            started = time.monotonic()
            # The Spark flavour still takes artifact_path (not name, unlike the other flavours).
            info = mlflow.spark.log_model(model, artifact_path="model",
                                          pip_requirements=_pip_requirements())
            log_seconds = time.monotonic() - started
            model_uri = info.model_uri
            mlflow.log_metric("log_model_seconds", log_seconds)
            log.info("model logged in %.1f s: %s", log_seconds, model_uri)
    run_id = run.info.run_id

    out = settings.path("models")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(
        json.dumps({"run_id": run_id, "params": params, "metrics": metrics}, indent=2) + "\n",
        encoding="utf-8")
    return {"run_id": run_id, "experiment_id": experiment_id, "model_uri": model_uri,
            "params": params, "metrics": metrics, "validation": gate.status,
            "seconds": {"fit": fit_seconds, "log_model": log_seconds}}
