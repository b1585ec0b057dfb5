"""Score: the registry's champion (``models:/<name>@champion``) on every session of the lake.

Batch scoring: the same session features as training (:func:`website_activity.stages.features.session_features`)
from silver, the champion's pipeline (with its tuned threshold), and two outputs:

* ``paths.predictions`` (Parquet): ``session_id, user_id, probability, prediction, actual``;
* ``<reports>/predictions.csv``: the same columns, sorted by ``session_id``.

``actual`` is the observed label (1.0 when the session has a purchase in the lake). A session still
in progress has no purchase yet: its ``actual`` is what is known so far.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.adapters.files import atomic_path
from website_activity.adapters.lake import read_silver
from website_activity.core.catalog import predictions_csv_path
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.stages.features import session_features

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("session_id", "user_id", "probability", "prediction", "actual")


def champion_uri(registered_model: str, alias: str) -> str:
    """The champion's model URI: ``models:/<mlflow.registered_model>@<mlflow.champion_alias>``."""
    return f"models:/{registered_model}@{alias}"


def load_champion(settings: Settings) -> tuple[Any, Any]:
    """The champion's Spark ``PipelineModel`` and its model version.

    Raises:
        PipelineError: There is no registered model or no champion yet (``make train`` first).
    """
    from website_activity.adapters.registry import champion, client as mlflow_client

    conf = settings["mlflow"]
    uri = champion_uri(conf["registered_model"], conf["champion_alias"])
    client = mlflow_client(settings)
    try:
        version = champion(client, conf["registered_model"], conf["champion_alias"])
    except Exception as exc:
        raise PipelineError(f"MLflow at {settings.tracking_uri}: {first_line(exc)}") from exc
    if version is None:
        raise PipelineError(f"no model holds {uri} in {settings.tracking_uri}: "
                            "run make train (a version becomes champion when it passes the promotion rule)")
    try:
        model = _load_spark_model(client, settings, version)
    except PipelineError:
        raise
    except Exception as exc:
        raise PipelineError(f"cannot load {uri}: {first_line(exc)}") from exc
    return model, version


def local_model_dir(download_uri: str) -> Path | None:
    """The Spark model folder of a model version whose artifacts are local files, else None."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(download_uri)
    if parsed.scheme not in ("", "file"):
        return None
    folder = Path(unquote(parsed.path)) / "sparkml"
    return folder if (folder / "metadata").is_dir() else None


def _load_spark_model(client: Any, settings: Settings, version: Any) -> Any:
    """The version's Spark ``PipelineModel``.

    Artifacts in a local folder (the default ``mlflow.artifact_root``) are read where they are:
    ``mlflow.spark.load_model`` would first copy them to a temporary folder and then to the
    "DFS" (the same local disk here), which was most of this stage's time. Any other store goes
    through MLflow.
    """
    conf = settings["mlflow"]
    model_uri = champion_uri(conf["registered_model"], conf["champion_alias"])
    uri = client.get_model_version_download_uri(conf["registered_model"], version.version)
    folder = local_model_dir(uri)
    if folder is not None:
        from pyspark.ml import PipelineModel

        log.info("loading %s from %s", model_uri, folder)
        return PipelineModel.load(str(folder))
    import mlflow
    import mlflow.spark

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.spark.load_model(model_uri)


def predictions(model: Any, features: "DataFrame") -> "DataFrame":
    """``session_id, user_id, probability, prediction, actual`` for each row of the feature table.

    ``prediction`` and ``actual`` are 0/1 integers (``actual`` is null without a label).
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    actual = F.col("label") if "label" in features.columns else F.lit(None)
    return model.transform(features).select(
        "session_id", "user_id", vector_to_array("probability")[1].alias("probability"),
        F.col("prediction").cast("int").alias("prediction"), actual.cast("int").alias("actual"))


def run_score(spark: "SparkSession", settings: Settings) -> dict[str, Any]:
    """Score every session of silver with the champion and write the predictions.

    Returns:
        ``rows``, ``seconds``, ``rows_per_s``, ``version``, ``run_id``, ``csv`` and ``parquet`` paths.

    Raises:
        PipelineError: Silver is missing, or there is no champion.
    """
    silver = read_silver(spark, settings)
    model, version = load_champion(settings)
    started = time.monotonic()
    # Scored once: cached for the Parquet write, then collected from the cache for the CSV
    # (reading the Parquet back and sorting again was one more pass).
    scored = predictions(model, session_features(silver)).orderBy("session_id").coalesce(1).persist()
    parquet = settings.path("predictions")
    try:
        scored.write.mode("overwrite").parquet(str(parquet))
        frame = scored.toPandas()
    except Exception as exc:
        raise PipelineError(f"cannot write {parquet}: {first_line(exc)}") from exc
    finally:
        scored.unpersist()
    csv = predictions_csv_path(settings)
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6f")
    seconds = time.monotonic() - started
    rows = len(frame)
    log.info("scored %d sessions with version %s in %.1f s", rows, version.version, seconds)
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else float("inf"),
            "version": str(version.version), "run_id": version.run_id, "csv": Path(csv),
            "parquet": Path(parquet), "positive": int((frame["prediction"] == 1).sum())}
