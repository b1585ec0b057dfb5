"""Train: session features -> a tuned Spark ML logistic regression, evaluated honestly, tracked in MLflow.

The question the model answers: *will this session end in a purchase?*

1. **Features** (:mod:`website_activity.features`): one row per session from silver, built only
   from the events before the purchase; written to ``paths.features`` and logged as the run's input.
2. **Split** by a hash of ``session_id`` and ``train.seed`` into train / validation / test (stable
   whatever the partitioning or the other rows).
3. **Search**: a Spark ML ``Pipeline`` (index + one-hot the categoricals, assemble, standardise,
   ``LogisticRegression``) tuned by ``TrainValidationSplit`` (seeded; ``train.train_ratio`` of the
   training split fits, the rest scores ROC AUC) over ``train.reg_params`` x
   ``train.elastic_net_params``, then refitted on the whole training split. (Not
   ``CrossValidator``: k folds cost k times the fits, and on 2 shared cores each LR iteration is a
   Spark job.) The feature table is read back from one sorted file, so the seeded split inside
   the search sees the same rows in the same order on every run.
4. **Threshold**: the class imbalance is handled by the decision threshold, tuned on the validation
   split to maximise F1 (the training data is not reweighted, so the probabilities stay calibrated).
5. **Evaluation** on the test split (:mod:`website_activity.evaluation`), with the majority-class
   baseline and, when the generator's ground truth is there, the oracle AUC and the gap to it.
6. **MLflow**: one run with params, metrics, tags, input dataset, plots and the model, registered
   as a new version of ``mlflow.registered_model``; the ``champion`` alias moves by the rule of
   :mod:`website_activity.registry`, and a new champion is exported to ``models/champion/``.

:func:`session_features`, :func:`assign_splits` and :func:`build_pipeline` are pure and unit-tested
on inline DataFrames; the reading, fitting and logging live in :func:`run_train`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.config import Settings
from website_activity.errors import PipelineError, first_line
from website_activity.features import (CATEGORICAL, FEATURE_COLUMNS, MODEL_INPUTS, NUMERIC, ONE_HOT_INTEGER,
                                       read_features, session_features, write_features)
from website_activity.lake import read_json, read_silver
from website_activity.validate import latest_path, require_gate

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

__all__ = ["CATEGORICAL", "FEATURE_COLUMNS", "MODEL_INPUTS", "NUMERIC", "assign_splits", "build_pipeline",
           "run_train", "session_features", "split_sessions"]

SPLITS = ("train", "validation", "test")
PIPELINE = "StringIndexer > OneHotEncoder > VectorAssembler > StandardScaler > LogisticRegression"


# -- pure transforms ------------------------------------------------------------------------
def _bucket(seed: int, salt: str, buckets: int) -> Any:
    from pyspark.sql import functions as F

    # pmod, not abs(...) % n: abs(Long.MinValue) overflows (an error under ANSI mode).
    return F.pmod(F.xxhash64(F.col("session_id"), F.lit(seed), F.lit(salt)), F.lit(buckets))


def assign_splits(features: "DataFrame", test_fraction: float, validation_fraction: float,
                  seed: int) -> "DataFrame":
    """Add ``split`` (``train``, ``validation`` or ``test``) by hashing ``session_id`` with ``seed``.

    A session's split depends on its id and ``seed`` alone: not on the partitioning, the
    row order or the other rows, so a rerun on more data keeps earlier test sessions in the test
    set. Fractions are in steps of 0.001.
    """
    from pyspark.sql import functions as F

    if not (0 < test_fraction and 0 < validation_fraction and test_fraction + validation_fraction < 1):
        raise PipelineError(f"train.test_fraction ({test_fraction}) and train.validation_fraction "
                            f"({validation_fraction}) must be > 0 and leave room for training")
    bucket = _bucket(seed, "split", 1000)
    test_cut = int(round(test_fraction * 1000))
    val_cut = test_cut + int(round(validation_fraction * 1000))
    split = (F.when(bucket < test_cut, "test").when(bucket < val_cut, "validation").otherwise("train"))
    return features.withColumn("split", split)


def split_sessions(features: "DataFrame", test_fraction: float, validation_fraction: float,
                   seed: int) -> tuple["DataFrame", "DataFrame", "DataFrame"]:
    """(train, validation, test) as three DataFrames (see :func:`assign_splits`)."""
    from pyspark.sql import functions as F

    df = assign_splits(features, test_fraction, validation_fraction, seed)
    return tuple(df.where(F.col("split") == s).drop("split") for s in SPLITS)  # type: ignore[return-value]


def build_pipeline(train_conf: dict[str, Any]) -> tuple[Any, Any]:
    """The Spark ML pipeline and its ``LogisticRegression`` stage (the search tunes that stage)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    indexed = [f"{c}_index" for c in CATEGORICAL]
    encoded = [f"{c}_onehot" for c in (*CATEGORICAL, *ONE_HOT_INTEGER)]
    lr = LogisticRegression(featuresCol="features", labelCol="label", maxIter=int(train_conf["max_iter"]),
                            tol=float(train_conf["tol"]),
                            regParam=float(train_conf["reg_params"][0]),
                            elasticNetParam=float(train_conf["elastic_net_params"][0]))
    pipeline = Pipeline(stages=[
        # "keep": a device or browser unseen in training gets its own slot, not an error.
        StringIndexer(inputCols=list(CATEGORICAL), outputCols=indexed, handleInvalid="keep",
                      stringOrderType="alphabetAsc"),
        OneHotEncoder(inputCols=[*indexed, *ONE_HOT_INTEGER], outputCols=encoded, handleInvalid="keep"),
        VectorAssembler(inputCols=[*encoded, *NUMERIC], outputCol="raw_features"),
        StandardScaler(inputCol="raw_features", outputCol="features"),
        lr,
    ])
    return pipeline, lr


def build_search(train_conf: dict[str, Any], seed: int) -> Any:
    """``TrainValidationSplit`` over the pipeline: regParam x elasticNetParam, by ROC AUC, seeded."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    pipeline, lr = build_pipeline(train_conf)
    grid = (ParamGridBuilder()
            .addGrid(lr.regParam, [float(v) for v in train_conf["reg_params"]])
            .addGrid(lr.elasticNetParam, [float(v) for v in train_conf["elastic_net_params"]])
            .build())
    return TrainValidationSplit(estimator=pipeline, estimatorParamMaps=grid,
                                evaluator=BinaryClassificationEvaluator(labelCol="label", metricName="areaUnderROC"),
                                trainRatio=float(train_conf["train_ratio"]), seed=seed, parallelism=1)


def probabilities(model: "PipelineModel", df: "DataFrame") -> "pd.DataFrame":
    """``session_id, user_id, label, probability`` (of a purchase) for ``df``, sorted by session."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    cols = ["session_id", "user_id"] + (["label"] if "label" in df.columns else [])
    scored = model.transform(df).select(*cols, vector_to_array("probability")[1].alias("probability"))
    return scored.orderBy("session_id").toPandas()


def coefficients_table(model: "PipelineModel", schema_df: "DataFrame") -> "pd.DataFrame":
    """The fitted coefficients by feature name: per standard deviation (as fitted) and per unit, with odds ratios."""
    import numpy as np
    import pandas as pd

    meta = model.transform(schema_df.limit(0)).schema["raw_features"].metadata["ml_attr"]["attrs"]
    names = {a["idx"]: a["name"] for kind in meta.values() for a in kind}
    lr, scaler = model.stages[-1], model.stages[-2]
    coef = lr.coefficients.toArray()
    std = scaler.std.toArray()
    per_unit = np.divide(coef, std, out=np.zeros_like(coef), where=std > 0)
    table = pd.DataFrame({
        "feature": [names.get(i, f"f{i}") for i in range(len(coef))],
        "coefficient": coef, "std": std, "coefficient_per_unit": per_unit,
        "odds_ratio": np.exp(coef), "odds_ratio_per_unit": np.exp(per_unit)})
    intercept = pd.DataFrame({"feature": ["(intercept)"], "coefficient": [lr.intercept], "std": [math.nan],
                              "coefficient_per_unit": [lr.intercept], "odds_ratio": [math.exp(lr.intercept)],
                              "odds_ratio_per_unit": [math.exp(lr.intercept)]})
    return pd.concat([intercept, table], ignore_index=True)


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
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
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


def read_ground_truth(settings: Settings) -> "pd.DataFrame | None":
    """The generator's ground truth (``session_id, p_convert, complete``), or ``None`` when there is none.

    Events from a real site have none: the oracle metrics are then skipped, not an error.
    """
    import pyarrow.dataset as ds

    path = settings.path("ground_truth")
    files = sorted(p for p in path.glob("*.parquet")) if path.is_dir() else []
    if not files:
        return None
    try:
        table = ds.dataset([str(f) for f in files], format="parquet").to_table(
            columns=["session_id", "p_convert", "complete"])
    except Exception as exc:  # pyarrow's errors are one line already
        raise PipelineError(f"cannot read the ground truth in {path}: {first_line(exc)}") from exc
    return table.to_pandas()


def _git(settings: Settings, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=settings.root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def config_hash(settings: Settings) -> str:
    """A short digest of the merged configuration (the same config gives the same hash)."""
    text = json.dumps(settings.public(), sort_keys=True, default=str)  # no secret, not even hashed
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lineage_tags(settings: Settings) -> dict[str, str]:
    """Tags that tie a run to its code and data: git commit, and the run manifests' reconciliation counts."""
    tags: dict[str, str] = {}
    commit = _git(settings, "rev-parse", "HEAD")
    tags["git_commit"] = commit or "unknown"
    status = _git(settings, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags["git_dirty"] = str(bool(status)).lower()
    sources = {"validation": latest_path(settings),
               "produce": settings.path("runs") / "produce.json",
               "ingest": settings.path("runs") / "ingest.json"}
    for prefix, path in sources.items():
        data = read_json(path)
        if data is None:
            continue
        for key, value in data.items():
            if isinstance(value, dict) and prefix == "validation" and key == "quarantine":
                for k, v in value.items():
                    tags[f"validation.quarantine_{k}"] = str(v)
            elif isinstance(value, dict) and key in ("faults", "quarantine_by_reason"):
                tags[f"{prefix}.{key}"] = json.dumps(value, sort_keys=True)[:5000]
            elif isinstance(value, (str, int, float, bool)) and not (prefix == "validation" and key == "fingerprint"):
                tags[f"{prefix}.{key}"] = str(value)[:5000]
    return tags


def _split_counts(labelled: "DataFrame") -> dict[str, tuple[int, int]]:
    from pyspark.sql import functions as F

    rows = labelled.groupBy("split").agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("pos")).collect()
    counts = {r["split"]: (int(r["n"]), int(r["pos"] or 0)) for r in rows}
    for split in SPLITS:
        n, pos = counts.setdefault(split, (0, 0))
        if pos == 0 or pos == n:
            raise PipelineError(f"the {split} split has {n} sessions, {pos} with a purchase: both classes are "
                                f"needed (ingest more events)")
    return counts


def _log_artifacts(run_dir: Path, val: "pd.DataFrame", test: "pd.DataFrame", metrics: dict[str, float],
                   threshold: float, coefs: "pd.DataFrame", search: "pd.DataFrame",
                   oracle: tuple | None) -> None:
    import mlflow

    from website_activity import evaluation as ev

    y, p = test["label"].to_numpy(), test["probability"].to_numpy()
    ev.plot_roc(y, p, run_dir / "roc_curve.png", oracle)
    ev.plot_pr(y, p, run_dir / "pr_curve.png")
    ev.plot_confusion(metrics, threshold, run_dir / "confusion_matrix.png")
    ev.plot_calibration(y, p, run_dir / "calibration.png")
    body = coefs[coefs["feature"] != "(intercept)"]
    ev.plot_coefficients(list(body["feature"]), list(body["coefficient"]), run_dir / "coefficients.png")
    coefs.to_csv(run_dir / "coefficients.csv", index=False, lineterminator="\n", float_format="%.10g")
    search.to_csv(run_dir / "search.csv", index=False, lineterminator="\n", float_format="%.10g")
    test.to_csv(run_dir / "test_predictions.csv", index=False, lineterminator="\n", float_format="%.10g")
    mlflow.log_artifacts(str(run_dir), artifact_path="evaluation")


def validated_silver(spark: "SparkSession", settings: Settings) -> tuple["DataFrame", int | None]:
    """Silver as the quality gate validated it: the Delta version in ``latest.json``, read with
    time travel (``versionAsOf``); the latest version when no validation recorded one."""
    version = (read_json(latest_path(settings)) or {}).get("silver_version")
    return read_silver(spark, settings, version), version


def log_silver_input(settings: Settings, silver: "DataFrame", version: int | None) -> None:
    """Log silver at ``version`` as the run's source dataset (a ``delta_table`` source).

    MLflow 3.17's ``DeltaDatasetSource.to_dict`` drops a version that is 0 (it tests the value,
    not ``is not None``), which would read as "the latest version": the subclass keeps it.
    """
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.spark_dataset import SparkDataset

    class _Source(DeltaDatasetSource):
        def to_dict(self) -> dict[Any, Any]:
            info = super().to_dict()
            if self._delta_table_version is not None:
                info["delta_table_version"] = self._delta_table_version
            return info

    source = _Source(path=str(settings.path("silver")), delta_table_version=version)
    digest = f"v{version}" if version is not None else None  # a version names the data exactly
    mlflow.log_input(SparkDataset(df=silver, source=source, name="silver", digest=digest), context="source")
    if version is not None:
        mlflow.set_tag("silver_version", str(version))


def run_train(spark: "SparkSession", settings: Settings, force: bool = False) -> dict[str, Any]:
    """Features, search, evaluation and one MLflow run with a registered model (see the module docstring).

    Only on a lake that passed the quality gate (``make validate``) and has not changed since,
    unless ``force``. The run is tagged ``validation_status`` (``passed``, ``failed``, ``missing``
    or ``stale``) and ``validation_forced``; a forced run is never promoted. Also writes
    ``metrics.json`` (run id, params, metrics, promotion) into ``paths.models``.

    Args:
        spark: The session.
        settings: Gives ``train.*``, ``mlflow.*`` and the paths.
        force: Train even when the latest validation failed, is missing or is stale.

    Returns:
        ``run_id``, ``experiment_id``, ``model_uri`` and ``version`` (``None`` when
        ``mlflow.log_model`` is false), ``promotion``, ``params``, ``metrics``, ``threshold``,
        ``validation`` and ``seconds``.

    Raises:
        PipelineError: Silver is missing, the quality gate did not pass (without ``force``), a
            split lacks one of the classes, or MLflow cannot be reached.
    """
    import mlflow
    import mlflow.data
    import mlflow.spark
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient
    from pyspark.sql import functions as F

    from website_activity import evaluation as ev
    from website_activity import registry

    started_all = time.monotonic()
    conf = settings["train"]
    seed = int(conf["seed"])
    silver, silver_version = validated_silver(spark, settings)
    gate = require_gate(settings, force)
    experiment_id = ensure_experiment(settings)  # an unreachable MLflow fails before the Spark work
    rows = silver.count()
    features_path = write_features(session_features(silver), settings)
    features = read_features(spark, settings)
    labelled = assign_splits(features, float(conf["test_fraction"]), float(conf["validation_fraction"]),
                             seed).persist()
    seconds: dict[str, float] = {}
    try:
        counts = _split_counts(labelled)
        seconds["features"] = time.monotonic() - started_all
        log.info("%d events, %d sessions: %s", rows, sum(n for n, _ in counts.values()),
                 ", ".join(f"{counts[s][0]} {s} ({counts[s][1]} purchases)" for s in SPLITS))

        started = time.monotonic()
        search_model = build_search(conf, seed).fit(labelled.where(F.col("split") == "train"))
        model: PipelineModel = search_model.bestModel
        seconds["search"] = time.monotonic() - started
        lr_model = model.stages[-1]
        search = pd.DataFrame([{**{p.name: v for p, v in pm.items()}, "search_roc_auc": auc}
                               for pm, auc in zip(search_model.getEstimatorParamMaps(), search_model.validationMetrics)])
        val = probabilities(model, labelled.where(F.col("split") == "validation"))
        test = probabilities(model, labelled.where(F.col("split") == "test"))
        threshold = ev.best_threshold(val["label"].to_numpy(), val["probability"].to_numpy())
        lr_model.setThreshold(threshold)  # the logged and exported model predicts with it
        coefs = coefficients_table(model, labelled)
        example = (labelled.where(F.col("split") == "test").orderBy("session_id").limit(5)
                   .select(*MODEL_INPUTS).toPandas())
        example_out = model.transform(spark.createDataFrame(example)).select("prediction").toPandas()
    finally:
        labelled.unpersist()

    train_rate = counts["train"][1] / counts["train"][0]
    metrics = ev.binary_metrics(test["label"].to_numpy(), test["probability"].to_numpy(), threshold, train_rate)
    val_metrics = ev.binary_metrics(val["label"].to_numpy(), val["probability"].to_numpy(), threshold, train_rate)
    metrics.update({f"val_{k}": v for k, v in val_metrics.items()
                    if k in ("roc_auc", "pr_auc", "log_loss", "brier", "f1", "accuracy")})
    metrics.update(train_rows=float(counts["train"][0]), validation_rows=float(counts["validation"][0]),
                   test_rows=float(counts["test"][0]), threshold=threshold,
                   search_best_roc_auc=float(max(search_model.validationMetrics)))
    truth = read_ground_truth(settings)
    oracle_curve, oracle_note = None, "no ground truth in " + str(settings.path("ground_truth"))
    if truth is not None:
        joined = test.merge(truth, on="session_id", how="inner")
        joined = joined[joined["complete"].astype(bool)]
        om = ev.oracle_metrics(joined["label"].to_numpy(), joined["probability"].to_numpy(),
                               joined["p_convert"].to_numpy())
        if om:
            metrics.update(om)
            oracle_curve, oracle_note = (joined["label"].to_numpy(), joined["p_convert"].to_numpy()), "computed"
        else:
            oracle_note = f"ground truth matches {len(joined)} complete test sessions, not both classes"
    log.info("test ROC AUC %.4f (oracle %s), PR AUC %.4f, F1 %.3f at threshold %.3f; search %.1f s",
             metrics["roc_auc"], f"{metrics['oracle_roc_auc']:.4f}" if "oracle_roc_auc" in metrics else "n/a",
             metrics["pr_auc"], metrics["f1"], threshold, seconds["search"])

    best_reg, best_en = lr_model.getRegParam(), lr_model.getElasticNetParam()
    params = {
        "pipeline": PIPELINE, "features": ",".join(MODEL_INPUTS), "label": "session has a purchase",
        "search": "TrainValidationSplit", "search_metric": "areaUnderROC", "train_ratio": conf["train_ratio"],
        "search_reg_params": json.dumps(conf["reg_params"]),
        "search_elastic_net_params": json.dumps(conf["elastic_net_params"]),
        "reg_param": best_reg, "elastic_net_param": best_en, "max_iter": conf["max_iter"], "tol": conf["tol"],
        "threshold_rule": "max F1 on validation", "seed": seed, "test_fraction": conf["test_fraction"],
        "validation_fraction": conf["validation_fraction"], "events": rows, "rows": rows,
        "sessions": sum(n for n, _ in counts.values()), "config_hash": config_hash(settings),
    }
    # The registry explicitly too: without it the client takes the process-wide registry URI,
    # which an earlier run in the same process may have pointed at another store.
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    model_uri = version = None
    promotion = None
    with warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment_id) as run:
        # MLflow's schema inference (dataset, signature) hints that integer columns cannot hold
        # missing values: the features never miss any.
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        mlflow.set_tags({"stage": "train", "profile": settings["profile"], "validation_status": gate.status,
                         "validation_forced": str(force).lower(), "oracle": oracle_note, **lineage_tags(settings)})
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))})
        dataset = mlflow.data.from_spark(features, path=features_path, name="session_features", targets="label")
        mlflow.log_input(dataset, context="training")
        log_silver_input(settings, silver, silver_version)
        with tempfile.TemporaryDirectory(prefix="wa-train-") as tmp:
            _log_artifacts(Path(tmp), val, test, metrics, threshold, coefs, search, oracle_curve)
        if settings["mlflow"]["log_model"]:
            started = time.monotonic()
            signature = infer_signature(example, example_out["prediction"])
            # The Spark flavour still takes artifact_path (not name, unlike the other flavours).
            info = mlflow.spark.log_model(model, artifact_path="model", signature=signature,
                                          input_example=example, pip_requirements=_pip_requirements(),
                                          registered_model_name=settings["mlflow"]["registered_model"])
            seconds["log_model"] = time.monotonic() - started
            model_uri, version = info.model_uri, str(info.registered_model_version)
            promotion = registry.promote(client, settings, version, metrics["val_roc_auc"], gate.passed)
            mlflow.set_tags({"registered_model": settings["mlflow"]["registered_model"],
                             "registered_version": version,
                             "promotion": "promoted" if promotion.promoted else "kept",
                             "promotion_reason": promotion.reason})
            log.info("model logged in %.1f s: %s (version %s)", seconds["log_model"], model_uri, version)
        else:
            mlflow.set_tags({"promotion": "kept", "promotion_reason": "mlflow.log_model is false: not registered"})
        seconds["total"] = time.monotonic() - started_all
        mlflow.log_metrics({f"{k}_seconds": v for k, v in seconds.items()})
    run_id = run.info.run_id

    out = settings.path("models")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"run_id": run_id, "version": version, "params": params, "metrics": metrics,
               "threshold": threshold,
               "promotion": None if promotion is None else registry.promotion_dict(promotion)}
    if promotion is not None and promotion.promoted:
        card = {"name": settings["mlflow"]["registered_model"], "version": version, "run_id": run_id,
                "model_uri": f"models:/{settings['mlflow']['registered_model']}@{settings['mlflow']['champion_alias']}",
                "threshold": threshold, "inputs": list(MODEL_INPUTS), "params": params,
                "metrics": {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}}
        registry.export_champion(model, card, settings)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    return {"run_id": run_id, "experiment_id": experiment_id, "model_uri": model_uri, "version": version,
            "promotion": promotion, "params": params, "metrics": metrics, "threshold": threshold,
            "validation": gate.status, "seconds": seconds, "coefficients": coefs}
