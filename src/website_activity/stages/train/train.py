"""Train: session features -> a tuned Spark ML logistic regression, evaluated honestly, tracked in MLflow.

The question the model answers: *will this session end in a purchase?*

1. **Features** (:mod:`website_activity.stages.features`): one row per session from silver, built only
   from the events before the purchase; written to ``paths.features`` and logged as the run's input.
2. **Split** by a hash of ``session_id`` and ``train.seed`` into train / validation / test (stable
   whatever the partitioning or the other rows).
3. **Search** over ``train.reg_params`` x ``train.elastic_net_params`` (light and no
   regularisation: with a dozen inputs and a thousand sessions or more, the regression is limited
   by noise in the search more than by overfitting), by ROC AUC. The preprocessing (index and
   one-hot the categoricals, assemble, standardise) is fitted once on the training split; the
   search fits only the ``LogisticRegression`` on those vectors, so each candidate costs its
   solver's iterations and nothing else. While the training split has at most
   ``train.cv_max_sessions`` sessions the search is a k-fold ``CrossValidator``
   (``train.folds`` folds by a hash of ``session_id``: every session is scored once, which a
   single hold-out of a few hundred sessions cannot match); above it, one
   ``TrainValidationSplit`` (``train.train_ratio``), since then a hold-out is large and k fits
   cost k times the time. The best candidate is refitted on the whole training split.
4. **Threshold**: the class imbalance is handled by the decision threshold, tuned on the validation
   split to maximise F1 (the training data is not reweighted, so the probabilities stay calibrated).
5. **Evaluation** on the test split (:mod:`website_activity.stages.train.evaluation`), with the majority-class
   baseline and, when the generator's ground truth is there, the oracle: the true probabilities
   (``oracle_roc_auc``, ``oracle_gap``) and a regression on the true model's own inputs fitted on
   the same training sessions (``oracle_model_roc_auc``, ``oracle_model_gap``).
6. **Champion and challenger on the same data**: the current champion scores this run's
   validation split, and the new version is promoted only if it beats that figure
   (:mod:`website_activity.adapters.registry`; both are logged).
7. **MLflow**: one run named after its data (``20000 events, seed 7, local``) with params,
   metrics, tags, input dataset, plots and the model (explicit pip requirements and signature:
   MLflow infers neither, which would start a second JVM), registered as a new version of
   ``mlflow.registered_model``; a new champion is exported to ``models/champion/``.

:func:`assign_splits`, :func:`fold_column`, :func:`build_preprocessing` and :func:`build_search`
are pure and unit-tested on inline DataFrames; the reading, fitting and logging live in
:func:`run_train` and its helpers.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from website_activity.adapters import registry
from website_activity.adapters.files import read_manifest, write_manifest
from website_activity.adapters.lake import read_silver
from website_activity.core.catalog import (ingest_summary_path, model_metrics_path, produce_manifest_path,
                                           validation_gate_path)
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.core.manifests import (ChampionCard, IngestSummary, Manifest, ModelMetrics, ProduceManifest,
                                             ValidationGate)
from website_activity.stages.features import (CATEGORICAL, FEATURE_COLUMNS, MODEL_INPUTS, NUMERIC, ONE_HOT_INTEGER,
                                              read_features, session_features, write_features)
from website_activity.stages.train.gate import GateStatus, require_gate

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

__all__ = ["CATEGORICAL", "FEATURE_COLUMNS", "MODEL_INPUTS", "NUMERIC", "assign_splits", "build_preprocessing",
           "build_search", "fold_column", "run_train", "session_features", "split_sessions"]

SPLITS = ("train", "validation", "test")
PIPELINE = "StringIndexer > OneHotEncoder > VectorAssembler > StandardScaler > LogisticRegression"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""MLflow 3's UI opens an experiment without this tag on its GenAI traces overview; with it, on the
training runs."""


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


def fold_column(df: "DataFrame", folds: int, seed: int) -> "DataFrame":
    """Add ``fold`` (0 .. folds-1, an int) by hashing ``session_id``: the cross-validation's folds,
    as stable as the split (another salt, so folds and splits are independent)."""
    return df.withColumn("fold", _bucket(seed, "fold", folds).cast("int"))


def use_cross_validation(train_sessions: int, train_conf: dict[str, Any]) -> bool:
    """k-fold cross-validation while the training split is small (see the module docstring)."""
    return train_sessions <= int(train_conf["cv_max_sessions"])


def build_preprocessing(train_conf: dict[str, Any]) -> Any:
    """The unfitted feature pipeline: categoricals indexed and one-hot encoded, everything
    assembled into ``raw_features`` and standardised into ``features``."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    indexed = [f"{c}_index" for c in CATEGORICAL]
    encoded = [f"{c}_onehot" for c in (*CATEGORICAL, *ONE_HOT_INTEGER)]
    return Pipeline(stages=[
        # "keep": a category unseen in training gets its own slot, not an error. alphabetAsc:
        # the same order (and so the same reference category, the last) on every lake.
        StringIndexer(inputCols=list(CATEGORICAL), outputCols=indexed, handleInvalid="keep",
                      stringOrderType="alphabetAsc"),
        OneHotEncoder(inputCols=[*indexed, *ONE_HOT_INTEGER], outputCols=encoded, handleInvalid="keep"),
        VectorAssembler(inputCols=[*encoded, *NUMERIC], outputCol="raw_features"),
        StandardScaler(inputCol="raw_features", outputCol="features"),
    ])


def build_classifier(train_conf: dict[str, Any]) -> Any:
    """The ``LogisticRegression`` stage, at the grid's first point (the search sets the others)."""
    from pyspark.ml.classification import LogisticRegression

    return LogisticRegression(featuresCol="features", labelCol="label", maxIter=int(train_conf["max_iter"]),
                              tol=float(train_conf["tol"]), regParam=float(train_conf["reg_params"][0]),
                              elasticNetParam=float(train_conf["elastic_net_params"][0]))


def build_search(train_conf: dict[str, Any], seed: int, cross_validate: bool) -> Any:
    """The search over the logistic regression (on preprocessed vectors), by ROC AUC.

    ``cross_validate``: a ``CrossValidator`` over the ``fold`` column (:func:`fold_column`);
    else a seeded ``TrainValidationSplit`` at ``train.train_ratio``.
    """
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit

    lr = build_classifier(train_conf)
    grid = (ParamGridBuilder()
            .addGrid(lr.regParam, [float(v) for v in train_conf["reg_params"]])
            .addGrid(lr.elasticNetParam, [float(v) for v in train_conf["elastic_net_params"]])
            .build())
    evaluator = BinaryClassificationEvaluator(labelCol="label", metricName="areaUnderROC")
    parallelism = int(train_conf["parallelism"])
    if cross_validate:
        return CrossValidator(estimator=lr, estimatorParamMaps=grid, evaluator=evaluator,
                              numFolds=int(train_conf["folds"]), foldCol="fold", seed=seed,
                              parallelism=parallelism)
    return TrainValidationSplit(estimator=lr, estimatorParamMaps=grid, evaluator=evaluator,
                                trainRatio=float(train_conf["train_ratio"]), seed=seed, parallelism=parallelism)


def probabilities(model: "PipelineModel", df: "DataFrame") -> "pd.DataFrame":
    """``session_id, user_id, label, probability`` (of a purchase) for ``df``, sorted by session."""
    from pyspark.ml.functions import vector_to_array

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


def run_name(settings: Settings, events: int) -> str:
    """What a run is, for the MLflow UI: ``20000 events, seed 7, local`` (the seed of the produce
    run that made the lake, when its manifest is there)."""
    produced = _manifest(produce_manifest_path(settings), ProduceManifest)
    seed = f", seed {produced.seed}" if produced is not None and produced.seed is not None else ""
    return f"{events} events{seed}, {settings['profile']}"


# -- the I/O edge -----------------------------------------------------------------------------
def _manifest(path: Path, cls: type[Any]) -> Any:
    """A manifest that names or tags a run (none when missing; a broken one is skipped, with a
    warning: the quality gate judges latest.json on its own)."""
    try:
        return read_manifest(path, cls)
    except PipelineError as exc:
        log.warning("%s", exc)
        return None


def artifact_location(settings: Settings) -> str:
    """``mlflow.artifact_root`` as a URI: a local folder becomes ``file://``, a URI stays as is."""
    root = settings["mlflow"]["artifact_root"]
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", root):  # s3://, mlflow-artifacts:/, file:///
        return root
    return settings.artifact_root.resolve().as_uri()


def ensure_experiment(settings: Settings) -> str:
    """The id of ``mlflow.experiment``, created with ``artifact_location(settings)`` if new, and
    marked as a model-training experiment (:func:`mark_training_experiment`).

    The artifact location is explicit because, without it, MLflow with a SQLite store puts
    artifacts in ``./mlruns`` relative to the working directory.

    Raises:
        PipelineError: The tracking store cannot be reached, or the experiment was deleted.
    """
    from mlflow.exceptions import MlflowException

    name = settings["mlflow"]["experiment"]
    location = artifact_location(settings)
    client = registry.client(settings)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name, artifact_location=location,
                                                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except MlflowException:  # created meanwhile by another process
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        mark_training_experiment(client, experiment)
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


def mark_training_experiment(client: Any, experiment: Any) -> None:
    """Tag ``experiment`` as a model-training one, so that the MLflow UI opens on its training runs
    (without the tag, MLflow 3's UI opens on its GenAI traces overview). Older experiments get
    the tag the next time they are used."""
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND and experiment.lifecycle_stage != "deleted":
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def ui_links(settings: Settings, base: str) -> list[tuple[str, str]]:
    """(label, URL) of the training runs and of the registered model in the MLflow UI at ``base``.

    Reads the tracking store (no server needed) and marks the experiment as a training one
    (:func:`mark_training_experiment`) so that the UI opens on its runs. Before the first
    ``make train`` there is no experiment yet: the list says so instead of giving a dead link.
    """
    from mlflow.exceptions import MlflowException

    conf = settings["mlflow"]
    client = _client(settings)
    try:
        experiment = client.get_experiment_by_name(conf["experiment"])
        if experiment is None:
            return [("training runs", f"none yet in experiment '{conf['experiment']}' (make train)")]
        mark_training_experiment(client, experiment)
        # MLflow 3.17.2's UI picks the view from its own GenAI / Model training switch (kept in the
        # browser, GenAI by default) and lets the URL set it: the tag alone does not open the runs.
        links = [("training runs",
                  f"{base}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning")]
        if client.search_registered_models(filter_string=f"name = '{conf['registered_model']}'"):
            links.append(("registered model", f"{base}/#/models/{conf['registered_model']}"))
    except MlflowException as exc:
        raise PipelineError(f"MLflow at {settings.tracking_uri}: {first_line(exc)}") from exc
    return links


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    # Explicit requirements spare MLflow from inferring them, which reloads the model in a
    # subprocess with a second JVM: 39 s instead of 4 s for log_model on 2 cores.
    return [f"{name}=={version(name)}" for name in ("pyspark", "mlflow", "numpy", "pandas")]


def read_ground_truth(settings: Settings) -> "pd.DataFrame | None":
    """The generator's ground truth (``session_id, p_convert, complete`` and the true model's
    inputs, :data:`~website_activity.simulate.generator.FEATURES`), or ``None`` when there is none.

    Events from a real site have none: the oracle metrics are then skipped, not an error.
    """
    import pyarrow.dataset as ds

    from website_activity.simulate.generator import FEATURES

    path = settings.path("ground_truth")
    files = sorted(p for p in path.glob("*.parquet")) if path.is_dir() else []
    if not files:
        return None
    try:
        table = ds.dataset([str(f) for f in files], format="parquet").to_table(
            columns=["session_id", "p_convert", "complete", *FEATURES])
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
    sources: dict[str, tuple[Path, type[Manifest]]] = {
        "validation": (validation_gate_path(settings), ValidationGate),
        "produce": (produce_manifest_path(settings), ProduceManifest),
        "ingest": (ingest_summary_path(settings), IngestSummary)}
    for prefix, (path, cls) in sources.items():
        record = _manifest(path, cls)
        if record is None:
            continue
        for key, value in record.to_dict().items():
            if isinstance(value, dict) and prefix == "validation" and key == "quarantine":
                for k, v in value.items():
                    tags[f"validation.quarantine_{k}"] = str(v)
            elif isinstance(value, dict) and key in ("faults", "quarantine_by_reason"):
                tags[f"{prefix}.{key}"] = json.dumps(value, sort_keys=True)[:5000]
            elif isinstance(value, (str, int, float, bool)) and not (prefix == "validation" and key == "fingerprint"):
                tags[f"{prefix}.{key}"] = str(value)[:5000]
    return tags


# -- the steps of run_train ----------------------------------------------------------------------
def read_gated_silver(spark: "SparkSession", settings: Settings,
                      force: bool) -> tuple["DataFrame", int | None, GateStatus]:
    """Silver at the version the gate validated, that version, and the gate's word on it:
    training obeys the gate (``make validate``).

    Raises:
        PipelineError: Silver is missing, or the gate did not pass and ``force`` is false.
    """
    silver, version = validated_silver(spark, settings)
    return silver, version, require_gate(settings, force)


@dataclass
class Prepared:
    """The feature table of a run, split, and the counts per split."""

    features: "DataFrame"             # as read back from paths.features
    path: str
    labelled: "DataFrame"             # features + split + fold, persisted: unpersist when done
    sessions: "pd.DataFrame"          # session_id, split, label of every session
    counts: dict[str, tuple[int, int]]  # split -> (sessions, purchases)
    events: int
    silver: "DataFrame"               # the events read, at the validated Delta version
    silver_version: int | None        # that version (None: no validation recorded one)


def prepare(spark: "SparkSession", settings: Settings, silver: "DataFrame",
            silver_version: int | None = None) -> Prepared:
    """Build and write the feature table, read it back (one sorted file: the same rows in the same
    order on every run), split it and count the classes per split.

    Raises:
        PipelineError: A split lacks one of the classes.
    """
    conf = settings["train"]
    seed = int(conf["seed"])
    events = silver.count()
    path = write_features(session_features(silver), settings)
    features = read_features(spark, settings)
    labelled = fold_column(assign_splits(features, float(conf["test_fraction"]), float(conf["validation_fraction"]),
                                         seed), int(conf["folds"]), seed).persist()
    try:
        sessions = labelled.select("session_id", "split", "label").toPandas()
        counts = split_counts(sessions)
    except BaseException:
        labelled.unpersist()
        raise
    return Prepared(features, path, labelled, sessions, counts, events, silver, silver_version)


def split_counts(sessions: "pd.DataFrame") -> dict[str, tuple[int, int]]:
    """(sessions, purchases) per split; both classes are needed in each.

    Raises:
        PipelineError: A split has no session with a purchase, or no session without one.
    """
    counts = {}
    for split in SPLITS:
        labels = sessions.loc[sessions["split"] == split, "label"]
        n, pos = int(len(labels)), int(labels.sum())
        if pos == 0 or pos == n:
            raise PipelineError(f"the {split} split has {n} sessions, {pos} with a purchase: both classes are "
                                f"needed (ingest more events)")
        counts[split] = (n, pos)
    return counts


@dataclass
class Fitted:
    """The refitted best pipeline and what the search saw."""

    model: "PipelineModel"
    search: "pd.DataFrame"            # one row per candidate: regParam, elasticNetParam, search_roc_auc
    method: str                       # CrossValidator or TrainValidationSplit
    best_search_roc_auc: float


def fit_model(labelled: "DataFrame", conf: dict[str, Any], train_sessions: int) -> Fitted:
    """The preprocessing fitted once on the training split, the search over the logistic
    regression on its vectors, the best candidate refitted on the whole training split."""
    import pandas as pd
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    seed = int(conf["seed"])
    train = labelled.where(F.col("split") == "train")
    prep = build_preprocessing(conf).fit(train)
    vectors = prep.transform(train).select("label", "fold", "features").persist()
    cross_validate = use_cross_validation(train_sessions, conf)
    try:
        search_model = build_search(conf, seed, cross_validate).fit(vectors)
    finally:
        vectors.unpersist()
    scores = search_model.avgMetrics if cross_validate else search_model.validationMetrics
    search = pd.DataFrame([{**{p.name: v for p, v in pm.items()}, "search_roc_auc": auc}
                           for pm, auc in zip(search_model.getEstimatorParamMaps(), scores)])
    model = PipelineModel(stages=[*prep.stages, search_model.bestModel])
    return Fitted(model, search, "CrossValidator" if cross_validate else "TrainValidationSplit",
                  float(max(scores)))


def score_splits(model: "PipelineModel", labelled: "DataFrame") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(validation, test): ``session_id, user_id, label, probability`` and the model's inputs of
    each session of the two splits, sorted by session, in one pass."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    scored = (model.transform(labelled.where(F.col("split") != "train"))
              .select("session_id", "user_id", "split", "label", *MODEL_INPUTS,
                      vector_to_array("probability")[1].alias("probability"))
              .orderBy("session_id").toPandas())
    val, test = (scored[scored["split"] == s].drop(columns="split").reset_index(drop=True)
                 for s in ("validation", "test"))
    return val, test


def oracle_figures(truth: "pd.DataFrame | None", sessions: "pd.DataFrame", test: "pd.DataFrame",
                   ground_truth: Path) -> tuple[dict[str, float], tuple | None, str]:
    """The oracle's metrics on the complete test sessions, its ROC curve's data and a note.

    Two oracles: the generator's true probabilities, and a logistic regression on the true
    model's own inputs fitted on the complete training sessions (what a regression can reach
    with perfect features on these sessions).

    Args:
        truth: The generator's ground truth (:func:`read_ground_truth`; None: there is none).
        ground_truth: Where it was looked for (``paths.ground_truth``), for the note.
    """
    from website_activity.simulate.generator import FEATURES
    from website_activity.stages.train import evaluation as ev

    if truth is None:
        return {}, None, "no ground truth in " + str(ground_truth)
    truth = truth[truth["complete"].astype(bool)]
    joined = test[["session_id", "label", "probability"]].merge(truth, on="session_id", how="inner")
    fit_on = sessions[sessions["split"] == "train"].merge(truth, on="session_id", how="inner")
    om = ev.oracle_metrics(joined["label"].to_numpy(), joined["probability"].to_numpy(),
                           joined["p_convert"].to_numpy())
    if not om:
        return {}, None, f"ground truth matches {len(joined)} complete test sessions, not both classes"
    if fit_on["label"].nunique() == 2:
        om.update(ev.oracle_model_metrics(fit_on[list(FEATURES)].to_numpy(float), fit_on["label"].to_numpy(),
                                          joined[list(FEATURES)].to_numpy(float), joined["label"].to_numpy(),
                                          om["model_oracle_sessions_roc_auc"]))
    return om, (joined["label"].to_numpy(), joined["p_convert"].to_numpy()), "computed"


def _log_artifacts(run_dir: Path, test: "pd.DataFrame", metrics: dict[str, float], threshold: float,
                   coefs: "pd.DataFrame", search: "pd.DataFrame", oracle: tuple | None) -> None:
    import mlflow

    from website_activity.stages.train import evaluation as ev
    y, p = test["label"].to_numpy(), test["probability"].to_numpy()
    ev.plot_roc(y, p, run_dir / "roc_curve.png", oracle)
    ev.plot_pr(y, p, run_dir / "pr_curve.png")
    ev.plot_confusion(metrics, threshold, run_dir / "confusion_matrix.png")
    ev.plot_calibration(y, p, run_dir / "calibration.png")
    body = coefs[coefs["feature"] != "(intercept)"]
    ev.plot_coefficients(list(body["feature"]), list(body["coefficient"]), run_dir / "coefficients.png")
    coefs.to_csv(run_dir / "coefficients.csv", index=False, lineterminator="\n", float_format="%.10g")
    search.to_csv(run_dir / "search.csv", index=False, lineterminator="\n", float_format="%.10g")
    test[["session_id", "user_id", "label", "probability"]].to_csv(
        run_dir / "test_predictions.csv", index=False, lineterminator="\n", float_format="%.10g")
    mlflow.log_artifacts(str(run_dir), artifact_path="evaluation")


def validated_silver(spark: "SparkSession", settings: Settings) -> tuple["DataFrame", int | None]:
    """Silver as the quality gate validated it: the Delta version in ``latest.json``, read with
    time travel (``versionAsOf``); the latest version when no validation recorded one."""
    gate = _manifest(validation_gate_path(settings), ValidationGate)
    version = None if gate is None else gate.silver_version
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


def _features_dataset(features: "DataFrame", path: str) -> Any:
    """The feature table as an MLflow dataset: its path, schema and a digest of its files.

    Not ``mlflow.data.from_spark``: its profile counts the rows through a Python RDD, which
    starts Python workers for a figure the run logs anyway (``train_rows`` ...).
    """
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.spark_dataset_source import SparkDatasetSource
    from mlflow.types.utils import _infer_schema

    digest = hashlib.sha256()
    for f in sorted(Path(path).glob("*.parquet")):
        digest.update(f.read_bytes())
    return MetaDataset(SparkDatasetSource(path=path), name="session_features", digest=digest.hexdigest()[:16],
                       schema=_infer_schema(features))


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}


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
        ``validation``, ``seconds`` and ``coefficients``.

    Raises:
        PipelineError: Silver is missing, the quality gate did not pass (without ``force``), a
            split lacks one of the classes, or MLflow cannot be reached.
    """
    started_all = time.monotonic()
    silver, silver_version, gate = read_gated_silver(spark, settings, force)
    experiment_id = ensure_experiment(settings)  # an unreachable MLflow fails before the Spark work
    client = _client(settings)
    seconds: dict[str, float] = {}
    data = prepare(spark, settings, silver, silver_version)
    seconds["features"] = time.monotonic() - started_all
    log_split_counts(data)
    trained = train_and_score(settings, client, data, seconds)
    metrics = run_metrics(settings, data, trained, seconds["search"])
    params = run_params(settings["train"], trained.fitted, data, config_hash(settings))
    run_id, model_uri, version, promotion = log_run(settings, experiment_id, client, data, trained, metrics,
                                                    params, gate, force, seconds, started_all)
    write_summary(settings, run_id, version, params, metrics, trained.threshold, promotion, trained.fitted.model,
                  trained.coefs)
    return {"run_id": run_id, "experiment_id": experiment_id, "model_uri": model_uri, "version": version,
            "promotion": promotion, "params": params, "metrics": metrics, "threshold": trained.threshold,
            "validation": gate.status, "seconds": seconds, "coefficients": trained.coefs}


def log_split_counts(data: Prepared) -> None:
    counts = data.counts
    log.info("%d events, %d sessions: %s", data.events, sum(n for n, _ in counts.values()),
             ", ".join(f"{counts[s][0]} {s} ({counts[s][1]} purchases)" for s in SPLITS))


@dataclass
class Trained:
    """What a run trained and measured before it is logged."""

    fitted: Fitted
    val: "pd.DataFrame"               # the validation split, scored
    test: "pd.DataFrame"              # the test split, scored
    threshold: float                  # max F1 on validation, set on the model
    coefs: "pd.DataFrame"
    champion: Any                     # the current champion scored on validation (None: not logged)
    oracle_curve: tuple | None = None
    oracle_note: str = ""


def train_and_score(settings: Settings, client: Any, data: Prepared, seconds: dict[str, float]) -> Trained:
    """Search and fit, score validation and test, pick the threshold, score the current champion;
    ``data.labelled`` is unpersisted at the end. Times go into ``seconds``."""
    from pyspark.sql import functions as F

    from website_activity.stages.train import evaluation as ev
    try:
        started = time.monotonic()
        fitted = fit_model(data.labelled, settings["train"], data.counts["train"][0])
        seconds["search"] = time.monotonic() - started
        started = time.monotonic()
        val, test = score_splits(fitted.model, data.labelled)
        threshold = ev.best_threshold(val["label"].to_numpy(), val["probability"].to_numpy())
        fitted.model.stages[-1].setThreshold(threshold)  # the logged and exported model predicts with it
        coefs = coefficients_table(fitted.model, data.labelled)
        seconds["evaluation"] = time.monotonic() - started
        started = time.monotonic()
        champion = (registry.score_champion(client, settings, data.labelled.where(F.col("split") == "validation"))
                    if settings["mlflow"]["log_model"] else None)
        seconds["champion"] = time.monotonic() - started
    finally:
        data.labelled.unpersist()
    return Trained(fitted, val, test, threshold, coefs, champion)


def run_metrics(settings: Settings, data: Prepared, trained: Trained, search_seconds: float) -> dict[str, float]:
    """The run's metrics (:func:`evaluate`), the oracles' and the champion's; records the oracle's
    curve and note on ``trained``."""
    metrics = evaluate(trained.val, trained.test, trained.threshold, data.counts, trained.fitted, trained.coefs)
    oracle, trained.oracle_curve, trained.oracle_note = oracle_figures(
        read_ground_truth(settings), data.sessions, trained.test, settings.path("ground_truth"))
    metrics.update(oracle)
    champion = trained.champion
    if champion is not None and champion.val_roc_auc is not None:
        metrics["champion_val_roc_auc"] = champion.val_roc_auc
    log.info("test ROC AUC %.4f (oracle %s, regression on the true inputs %s), PR AUC %.4f, F1 %.3f at threshold "
             "%.3f; %s %.1f s", metrics["roc_auc"], _fmt(metrics.get("oracle_roc_auc")),
             _fmt(metrics.get("oracle_model_roc_auc")), metrics["pr_auc"], metrics["f1"], trained.threshold,
             trained.fitted.method, search_seconds)
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


_client = registry.client


def evaluate(val: "pd.DataFrame", test: "pd.DataFrame", threshold: float, counts: dict[str, tuple[int, int]],
             fitted: Fitted, coefs: "pd.DataFrame") -> dict[str, float]:
    """The test split's metrics, the validation split's main ones (``val_*``) and the run's sizes."""
    from website_activity.stages.train import evaluation as ev
    train_rate = counts["train"][1] / counts["train"][0]
    metrics = ev.binary_metrics(test["label"].to_numpy(), test["probability"].to_numpy(), threshold, train_rate)
    val_metrics = ev.binary_metrics(val["label"].to_numpy(), val["probability"].to_numpy(), threshold, train_rate)
    metrics.update({f"val_{k}": v for k, v in val_metrics.items()
                    if k in ("roc_auc", "pr_auc", "log_loss", "brier", "f1", "accuracy")})
    body = coefs[coefs["feature"] != "(intercept)"]
    metrics.update(train_rows=float(counts["train"][0]), validation_rows=float(counts["validation"][0]),
                   test_rows=float(counts["test"][0]), threshold=threshold,
                   search_best_roc_auc=fitted.best_search_roc_auc,
                   nonzero_coefficients=float((body["coefficient"].abs() > 1e-9).sum()))
    return metrics


def run_params(conf: Mapping[str, Any], fitted: Fitted, data: Prepared, config_digest: str) -> dict[str, Any]:
    """The run's MLflow params: the pipeline, the search and its winner, the split, the data.

    Args:
        conf: The ``train`` section of the configuration.
        config_digest: :func:`config_hash` of the whole configuration.
    """
    lr = fitted.model.stages[-1]
    return {
        "pipeline": PIPELINE, "features": ",".join(MODEL_INPUTS), "label": "session has a purchase",
        "search": fitted.method, "search_metric": "areaUnderROC",
        "folds": conf["folds"] if fitted.method == "CrossValidator" else None,
        "train_ratio": conf["train_ratio"] if fitted.method == "TrainValidationSplit" else None,
        "cv_max_sessions": conf["cv_max_sessions"],
        "search_reg_params": json.dumps(conf["reg_params"]),
        "search_elastic_net_params": json.dumps(conf["elastic_net_params"]),
        "reg_param": lr.getRegParam(), "elastic_net_param": lr.getElasticNetParam(), "max_iter": conf["max_iter"],
        "tol": conf["tol"], "threshold_rule": "max F1 on validation", "seed": conf["seed"],
        "test_fraction": conf["test_fraction"], "validation_fraction": conf["validation_fraction"],
        "events": data.events, "rows": data.events, "sessions": sum(n for n, _ in data.counts.values()),
        "config_hash": config_digest,
    }


def log_run(settings: Settings, experiment_id: str, client: Any, data: Prepared, trained: Trained,
            metrics: dict[str, float], params: dict[str, Any], gate: GateStatus, force: bool,
            seconds: dict[str, float], started_all: float) -> tuple[str, str | None, str | None, Any]:
    """One MLflow run: tags, params, metrics, the input dataset, the plots, and the model
    (registered, and promoted by the registry's rule). Returns (run id, model URI, version, promotion)."""
    import mlflow

    fitted, test, threshold, champion = trained.fitted, trained.test, trained.threshold, trained.champion
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    model_uri = version = promotion = None
    name = run_name(settings, data.events)
    with warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        # MLflow's schema inference (dataset, signature) hints that integer columns cannot hold
        # missing values: the features never miss any.
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        mlflow.set_tags({"stage": "train", "profile": settings["profile"], "validation_status": gate.status,
                         "validation_forced": str(force).lower(), "oracle": trained.oracle_note,
                         **lineage_tags(settings),
                         **({} if champion is None else champion.tags())})
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics(_finite(metrics))
        mlflow.log_input(_features_dataset(data.features, data.path), context="training")
        log_silver_input(settings, data.silver, data.silver_version)
        with tempfile.TemporaryDirectory(prefix="wa-train-") as tmp:
            _log_artifacts(Path(tmp), test, metrics, threshold, trained.coefs, fitted.search, trained.oracle_curve)
        if settings["mlflow"]["log_model"]:
            started = time.monotonic()
            model_uri, version = log_model(settings, fitted.model, test, threshold)
            seconds["log_model"] = time.monotonic() - started
            promotion = registry.promote(client, settings, version, metrics["val_roc_auc"], gate.passed, champion)
            mlflow.set_tags({"registered_model": settings["mlflow"]["registered_model"],
                             "registered_version": version,
                             "promotion": "promoted" if promotion.promoted else "kept",
                             "promotion_reason": promotion.reason})
            log.info("model logged in %.1f s: %s (version %s)", seconds["log_model"], model_uri, version)
        else:
            mlflow.set_tags({"promotion": "kept", "promotion_reason": "mlflow.log_model is false: not registered"})
        seconds["total"] = time.monotonic() - started_all
        mlflow.log_metrics({f"{k}_seconds": v for k, v in seconds.items()})
    return run.info.run_id, model_uri, version, promotion


def log_model(settings: Settings, model: "PipelineModel", test: "pd.DataFrame", threshold: float) -> tuple[str, str]:
    """Log and register the Spark pipeline with its signature, pip requirements and an input
    example, none of them inferred. Returns (model URI, version).

    ``Model.log`` with the Spark flavour is what ``mlflow.spark.log_model`` runs for a local
    artifact store, but it also takes ``validate_serving_input=False``: that check reloads the
    just-saved model as a pyfunc and predicts the example (60 % of log_model's time here), which
    proves nothing the test split's scoring has not.
    """
    import mlflow.spark
    from mlflow.models import Model, infer_signature

    example = test[list(MODEL_INPUTS)].head(5).reset_index(drop=True)
    prediction = (test["probability"].head(5) >= threshold).astype(float).reset_index(drop=True)
    signature = infer_signature(example, prediction.rename("prediction"))
    info = Model.log(artifact_path=None, name="model", flavor=mlflow.spark, spark_model=model, signature=signature,
                     input_example=example, pip_requirements=_pip_requirements(),
                     registered_model_name=settings["mlflow"]["registered_model"], validate_serving_input=False)
    return info.model_uri, str(info.registered_model_version)


def write_summary(settings: Settings, run_id: str, version: str | None, params: dict[str, Any],
                  metrics: dict[str, float], threshold: float, promotion: Any, model: "PipelineModel",
                  coefs: "pd.DataFrame") -> None:
    """``models/metrics.json`` (with the coefficients per unit), and a new champion's export to
    ``models/champion/``."""

    out = settings.path("models")
    out.mkdir(parents=True, exist_ok=True)
    summary = ModelMetrics(
        run_id=run_id, version=version, params=params, metrics=metrics, threshold=threshold,
        promotion=None if promotion is None else registry.promotion_dict(promotion),
        coefficients_per_unit=dict(zip(coefs["feature"], coefs["coefficient_per_unit"].astype(float))))
    if promotion is not None and promotion.promoted:
        conf = settings["mlflow"]
        card = ChampionCard(name=conf["registered_model"], version=version, run_id=run_id,
                            model_uri=f"models:/{conf['registered_model']}@{conf['champion_alias']}",
                            threshold=threshold, inputs=list(MODEL_INPUTS), params=params, metrics=_finite(metrics))
        conf_name = settings["mlflow"]["registered_model"]
        saved = registry.local_artifacts(_client(settings), conf_name, str(version))
        registry.export_champion(model, card, settings, None if saved is None else saved / "sparkml")
    write_manifest(model_metrics_path(settings), summary)
