"""Report: CSV summaries of the traffic in silver and of the MLflow runs, into ``paths.reports``.

* ``traffic_by_page.csv``: ``page_url, events, users, sessions``, busiest page first.
* ``traffic_by_device.csv``: ``device_type, events, users, sessions, share`` (share of events).
* ``model_metrics.csv``: one row per run of ``mlflow.experiment``, oldest first (test metrics,
  validation ROC AUC, oracle AUC and gap when known, chosen params, registered version, promotion).

Each file is UTF-8 with a header row, written whole under a temporary name and then renamed,
so a reader never sees half a report.
"""

from __future__ import annotations

import csv
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.config import Settings
from website_activity.lake import read_silver

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

RUN_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "brier", "precision", "recall",
               "threshold", "baseline_accuracy", "val_roc_auc", "oracle_roc_auc", "oracle_gap")
RUN_PARAMS = ("reg_param", "elastic_net_param", "max_iter", "seed", "test_fraction", "rows",
              "sessions")
RUN_TAGS = ("registered_version", "promotion")
MODEL_METRICS_HEADER = ("run_id", "start_time", "status", *RUN_METRICS, *RUN_PARAMS, *RUN_TAGS)


def traffic_by_page(silver: "DataFrame") -> "DataFrame":
    """Events, distinct users and distinct sessions per page, busiest first."""
    from pyspark.sql import functions as F

    return (silver.groupBy("page_url")
            .agg(F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users"),
                 F.countDistinct("session_id").alias("sessions"))
            .orderBy(F.desc("events"), "page_url"))


def traffic_by_device(silver: "DataFrame") -> "DataFrame":
    """Events, distinct users and sessions per device type, with each type's share of events."""
    from pyspark.sql import functions as F

    counts = silver.groupBy("device_type").agg(
        F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users"),
        F.countDistinct("session_id").alias("sessions"))
    # A cross join with the one-row total, not a window over everything (Spark warns about those).
    total = counts.agg(F.sum("events").alias("total"))
    return (counts.crossJoin(total)
            .select("device_type", "events", "users", "sessions",
                    F.round(F.col("events") / F.col("total"), 4).alias("share"))
            .orderBy(F.desc("events"), "device_type"))


def model_runs(settings: Settings) -> list[dict[str, Any]]:
    """The runs of ``mlflow.experiment`` as rows of :data:`MODEL_METRICS_HEADER`, oldest first.

    An experiment that does not exist yet (no training so far) has no runs.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri
    name = settings["mlflow"]["experiment"]
    experiment = MlflowClient(uri).get_experiment_by_name(name)
    if experiment is None:
        log.warning("no MLflow experiment '%s' at %s yet: model_metrics.csv has no rows", name, uri)
        return []
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_ids=[experiment.experiment_id], output_format="list",
                              order_by=["attributes.start_time ASC"])
    rows = []
    for run in runs:
        started = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc)
        row: dict[str, Any] = {"run_id": run.info.run_id,
                               "start_time": started.isoformat(timespec="seconds"),
                               "status": run.info.status}
        row.update({m: run.data.metrics.get(m) for m in RUN_METRICS})
        row.update({p: run.data.params.get(p) for p in RUN_PARAMS})
        row.update({t: run.data.tags.get(t) for t in RUN_TAGS})
        rows.append(row)
    return rows


def _write_atomically(path: Path, write: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        write(f)
    os.replace(tmp, path)
    return path


def _write_frame(df: "DataFrame", path: Path) -> Path:
    # Aggregates are small (a row per page or device): pandas writes them in one piece.
    frame = df.toPandas()
    return _write_atomically(path, lambda f: frame.to_csv(f, index=False, lineterminator="\n"))


def run_report(spark: "SparkSession", settings: Settings) -> list[Path]:
    """Write the three CSV reports into ``paths.reports`` (created if missing).

    Returns:
        The paths written.

    Raises:
        PipelineError: Silver is missing or empty.
    """
    silver = read_silver(spark, settings)
    out = settings.path("reports")
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _write_frame(traffic_by_page(silver), out / "traffic_by_page.csv"),
        _write_frame(traffic_by_device(silver), out / "traffic_by_device.csv"),
    ]
    runs = model_runs(settings)

    def write_runs(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=MODEL_METRICS_HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(runs)

    written.append(_write_atomically(out / "model_metrics.csv", write_runs))
    log.info("reports in %s (%d MLflow runs)", out, len(runs))
    return written
