"""Report: the CSVs users load into Power BI or a spreadsheet, and the offline dashboard.

``make report`` reads the lake (silver, gold), the run manifests (``produce.json``,
``ingest.json``), the latest validation and the MLflow runs, and writes into ``paths.reports``
(``reports/README.md`` documents every column):

=========================== ==================================================================
file                        one row per
=========================== ==================================================================
traffic_by_page.csv         page URL
traffic_by_device.csv       device type
traffic_by_browser.csv      browser
traffic_by_local_hour.csv   weekday x hour in the visitor's own time zone
traffic_per_minute.csv      minute x device x action (gold)
funnel.csv                  funnel step (sessions reaching it, conversion from the step before)
sessions_summary.csv        session
top_users.csv               one of the most active users
model_metrics.csv           MLflow run of the experiment (champion or not, AUC, gap to oracle)
coefficients.csv            model input of the champion (or the latest run)
five_vs.csv                 measured figure of the 5Vs (volume, velocity, variety, veracity, value)
index.html                  the dashboard: one self-contained page (see website_activity.stages.report.dashboard)
=========================== ==================================================================

``data_quality.csv`` (and the Data Docs) come from ``make validate``, ``predictions.csv`` from
``make score``; the dashboard links them. Report overwrites only its own files.

Every CSV is UTF-8 with a header row, comma-separated, timestamps ISO-8601 UTC
(``2026-01-05T08:00:00.000Z``), written whole under a temporary name and renamed, so a reader
never sees half a file. No report shows a raw IP address (:mod:`website_activity.stages.report.privacy`).
"""

from __future__ import annotations

import csv
import logging
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.adapters.files import atomic_path, read_manifest
from website_activity.adapters.lake import has_table, read_silver, read_table, table_stats
from website_activity.core.catalog import ingest_summary_path, produce_manifest_path, validation_gate_path
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.core.manifests import IngestSummary, ProduceManifest, ValidationGate
from website_activity.stages.report.dashboard import write_dashboard
from website_activity.stages.report.data import DashboardOptions, ModelInfo, ReportData
from website_activity.stages.report.privacy import ip_pseudonymiser

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

RUN_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "brier", "precision", "recall",
               "threshold", "baseline_accuracy", "positive_rate", "val_roc_auc", "oracle_roc_auc",
               "oracle_gap")
RUN_PARAMS = ("reg_param", "elastic_net_param", "max_iter", "seed", "test_fraction", "rows",
              "sessions")
RUN_TAGS = ("registered_version", "promotion", "validation_status")
MODEL_METRICS_HEADER = ("run_id", "start_time", "status", "champion", *RUN_METRICS, *RUN_PARAMS, *RUN_TAGS)
COEFFICIENTS_HEADER = ("run_id", "version", "champion", "feature", "coefficient", "odds_ratio", "rank")
FIVE_VS_HEADER = ("v", "measure", "value", "unit", "source")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FUNNEL = (("session", "sessions with at least one event"),
          ("product_view", "viewed a product page (/product/)"),
          ("add_to_cart", "added a product to the cart"),
          ("checkout", "reached /checkout"),
          ("purchase", "purchased"))
# The path of a page URL (the whole value when it is a bare path).
PATH_REGEX = r"^(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?([^?#]*)"
SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "year": 365 * 86400}
REPORT_FILES = ("traffic_by_page.csv", "traffic_by_device.csv", "traffic_by_browser.csv",
                "traffic_by_local_hour.csv", "traffic_per_minute.csv", "funnel.csv", "sessions_summary.csv",
                "top_users.csv", "model_metrics.csv", "coefficients.csv", "five_vs.csv", "index.html")


# -- aggregates of the lake (Spark) ---------------------------------------------------------
def _page_path() -> Any:
    from pyspark.sql import functions as F

    return F.regexp_extract("page_url", PATH_REGEX, 1)


def traffic_by_page(silver: "DataFrame") -> "DataFrame":
    """Events, distinct users and distinct sessions per page, busiest first."""
    from pyspark.sql import functions as F

    return (silver.groupBy("page_url")
            .agg(F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users"),
                 F.countDistinct("session_id").alias("sessions"))
            .orderBy(F.desc("events"), "page_url"))


def traffic_by(silver: "DataFrame", column: str) -> "DataFrame":
    """Events, distinct users and sessions per value of ``column``, with each value's share of events."""
    from pyspark.sql import functions as F

    counts = silver.groupBy(column).agg(
        F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users"),
        F.countDistinct("session_id").alias("sessions"))
    # A cross join with the one-row total, not a window over everything (Spark warns about those).
    total = counts.agg(F.sum("events").alias("total"))
    return (counts.crossJoin(total)
            .select(column, "events", "users", "sessions",
                    F.round(F.col("events") / F.col("total"), 4).alias("share"))
            .orderBy(F.desc("events"), column))


def traffic_by_local_hour(silver: "DataFrame") -> "DataFrame":
    """Events, sessions and purchases per weekday and hour of the event in its own time zone."""
    from pyspark.sql import functions as F

    local = F.from_utc_timestamp("timestamp", F.col("timezone"))
    names = F.element_at(F.array(*[F.lit(d) for d in WEEKDAYS]), F.weekday(local) + 1)
    return (silver.select(F.weekday(local).alias("local_weekday"), names.alias("weekday"),
                          F.hour(local).alias("local_hour"), "session_id", "action_type")
            .groupBy("local_weekday", "weekday", "local_hour")
            .agg(F.count(F.lit(1)).alias("events"), F.countDistinct("session_id").alias("sessions"),
                 F.sum((F.col("action_type") == "purchase").cast("long")).alias("purchases"))
            .orderBy("local_weekday", "local_hour"))


def session_table(silver: "DataFrame") -> "DataFrame":
    """One row per session: its first event's attributes, times, counts and funnel flags."""
    from pyspark.sql import functions as F

    path, action = _page_path(), F.col("action_type")

    def reached(condition: Any) -> Any:
        return F.max(F.when(condition, 1).otherwise(0)).cast("boolean")

    first = F.min(F.struct("timestamp", "event_id", "user_id", "device_type", "browser", "timezone",
                           "ip_address"))
    return (silver.groupBy("session_id")
            .agg(first.alias("first"),
                 F.min("timestamp").alias("start_time"), F.max("timestamp").alias("end_time"),
                 F.count(F.lit(1)).alias("events"), F.countDistinct("page_url").alias("pages"),
                 reached((action == "view") & path.startswith("/product/")).alias("product_view"),
                 reached(action == "add_to_cart").alias("add_to_cart"),
                 reached(path == "/checkout").alias("checkout"),
                 reached(action == "purchase").alias("purchase"),
                 reached(F.col("is_late")).alias("is_late"))
            .select("session_id", F.col("first.user_id").alias("user_id"), "start_time", "end_time",
                    (F.unix_millis("end_time") - F.unix_millis("start_time")).alias("duration_ms"),
                    "events", "pages", F.col("first.device_type").alias("device_type"),
                    F.col("first.browser").alias("browser"), F.col("first.timezone").alias("timezone"),
                    F.col("first.ip_address").alias("ip_address"),
                    "product_view", "add_to_cart", "checkout", "purchase", "is_late"))


def funnel(sessions: "DataFrame") -> list[dict[str, Any]]:
    """Sessions reaching each step of :data:`FUNNEL`, their share of all sessions and the
    conversion from the step before."""
    from pyspark.sql import functions as F

    row = sessions.agg(F.count(F.lit(1)).alias("session"),
                       *[F.sum(F.col(step).cast("long")).alias(step) for step, _ in FUNNEL[1:]]).first()
    counts = [int(row[step] or 0) for step, _ in FUNNEL]
    out, previous = [], None
    for i, ((step, meaning), n) in enumerate(zip(FUNNEL, counts)):
        out.append({"step": i + 1, "stage": step, "meaning": meaning, "sessions": n,
                    "share_of_sessions": round(n / counts[0], 4) if counts[0] else 0.0,
                    "conversion_from_previous": (round(n / previous, 4) if previous else
                                                 (1.0 if previous is None and n else 0.0))})
        previous = n
    return out


def top_users(sessions: "DataFrame", limit: int) -> "DataFrame":
    """The ``limit`` users with the most events: sessions, purchases, first and last seen, their
    device and browser (of their first session) and address (of their latest session)."""
    from pyspark.sql import functions as F

    return (sessions.groupBy("user_id")
            .agg(F.sum("events").alias("events"), F.count(F.lit(1)).alias("sessions"),
                 F.sum(F.col("purchase").cast("long")).alias("purchases"),
                 F.min("start_time").alias("first_seen"), F.max("end_time").alias("last_seen"),
                 F.min(F.struct("start_time", "device_type", "browser")).alias("first"),
                 F.max(F.struct("start_time", "ip_address")).alias("latest"))
            .select("user_id", "events", "sessions", "purchases", "first_seen", "last_seen",
                    F.col("first.device_type").alias("device_type"), F.col("first.browser").alias("browser"),
                    F.col("latest.ip_address").alias("ip_address"))
            .orderBy(F.desc("events"), "user_id")
            .limit(limit))


# -- the MLflow side ------------------------------------------------------------------------
def model_info(settings: Settings) -> ModelInfo:
    """The runs of ``mlflow.experiment`` (oldest first), the champion, and the featured run's
    coefficients and ROC plot (from its ``evaluation/`` artifacts).

    An experiment that does not exist yet (no training so far) gives no runs, not an error.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from website_activity.adapters import registry
    conf = settings["mlflow"]
    uri = settings.tracking_uri
    try:
        client = registry.client(settings)
        experiment = client.get_experiment_by_name(conf["experiment"])
    except Exception as exc:
        raise PipelineError(f"cannot read the MLflow store {uri}: {first_line(exc)}") from exc
    info = ModelInfo()
    if experiment is None:
        info.note = f"no MLflow experiment '{conf['experiment']}' at {uri} yet (run make train)"
        log.warning("%s: model_metrics.csv and coefficients.csv have no rows", info.note)
        return info
    info.experiment_id = experiment.experiment_id
    try:
        version = client.get_model_version_by_alias(conf["registered_model"], conf["champion_alias"])
        info.champion_version, champion_run = str(version.version), version.run_id
    except MlflowException:
        champion_run = None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"],
                              max_results=10000)
    for run in runs:
        started = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc)
        row: dict[str, Any] = {"run_id": run.info.run_id, "start_time": iso(started),
                               "status": run.info.status,
                               "champion": str(run.info.run_id == champion_run).lower()}
        row.update({m: run.data.metrics.get(m) for m in RUN_METRICS})
        row.update({p: run.data.params.get(p) for p in RUN_PARAMS})
        row.update({t: run.data.tags.get(t) for t in RUN_TAGS})
        info.runs.append(row)
    finished = [r for r in info.runs if r["status"] == "FINISHED" and r["roc_auc"] is not None]
    featured = ([r for r in finished if r["run_id"] == champion_run] or finished[-1:] or [None])[0]
    info.run = featured
    if featured is None:
        info.note = "no finished training run yet"
        return info
    info.note = ("the champion" if featured["run_id"] == champion_run else
                 "the latest run (there is no champion)")
    with tempfile.TemporaryDirectory(prefix="wa-report-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(run_id=featured["run_id"], artifact_path="evaluation",
                                                             dst_path=tmp, tracking_uri=uri))
        except Exception as exc:  # a run without artifacts still has metrics to show
            log.warning("run %s: no evaluation artifacts (%s)", featured["run_id"], first_line(exc))
            return info
        for name in ("roc_curve.png", "pr_curve.png", "calibration.png"):
            if (local / name).is_file():
                info.images[name] = (local / name).read_bytes()
        if (local / "coefficients.csv").is_file():
            with (local / "coefficients.csv").open(encoding="utf-8") as f:
                body = [r for r in csv.DictReader(f) if r["feature"] != "(intercept)"]
            body.sort(key=lambda r: -abs(float(r["coefficient"])))
            for rank, r in enumerate(body, 1):
                coef = float(r["coefficient"])
                info.coefficients.append({
                    "run_id": featured["run_id"], "version": featured["registered_version"] or "",
                    "champion": featured["champion"], "feature": r["feature"], "coefficient": round(coef, 6),
                    "odds_ratio": round(math.exp(coef), 6), "rank": rank})
    return info


# -- the 5Vs --------------------------------------------------------------------------------
def five_vs(settings: Settings, *, silver_rows: int, traffic_seconds: float, model: ModelInfo,
            validation: ValidationGate | None, produce: ProduceManifest | None,
            ingest: IngestSummary | None) -> list[dict[str, Any]]:
    """The 5Vs of the original write-up, each from a figure measured in this run.

    ``traffic_seconds`` is the span of the events' own times in silver (simulated traffic).
    """
    rows: list[dict[str, Any]] = []

    def add(v: str, measure: str, value: Any, unit: str, source: str) -> None:
        if isinstance(value, float):
            value = round(value, 6)
        rows.append({"v": v, "measure": measure, "value": value, "unit": unit, "source": source})

    silver = table_stats(settings.path("silver"))
    add("volume", "silver rows", silver_rows, "events", "silver")
    add("volume", "silver size", silver["bytes"], "bytes", "silver Parquet files")
    add("volume", "silver files", silver["files"], "files", "silver Parquet files")
    add("volume", "traffic span", round(traffic_seconds, 3), "seconds", "silver event times (max - min)")
    if produce:
        add("volume", "JSON sent", produce.bytes, "bytes", "produce.json")
    if traffic_seconds > 0:
        per_second = silver["bytes"] / traffic_seconds
        for unit, seconds in SECONDS.items():
            add("volume", f"silver growth per {unit}", per_second * seconds, "bytes", "silver size / traffic span")
        add("velocity", "traffic rate", silver_rows / traffic_seconds, "events/s of traffic",
            "silver rows / traffic span")
    if produce:
        add("velocity", "produced", produce.rate, "records/s", "produce.json (both producers)")
        for t in produce.topics:
            if t.get("seconds"):
                add("velocity", f"produced to {t['topic']}", t["sent"] / t["seconds"], "records/s", "produce.json")
    if ingest:
        add("velocity", "ingested", ingest.rate, "records/s", "ingest.json (last run)")
    for f in settings.schema_fields:
        add("variety", f"field {f['name']}", f["type"], "required" if f.get("required") else "optional",
            "website_activity.core.schema")
    add("variety", "sources", len(settings.topics), "topics", "topics.names")
    if validation:
        total = int(validation.expectations or 0)
        failed = len(validation.failures or [])
        if total:
            add("veracity", "expectations passed", 100.0 * (total - failed) / total, "%", "latest validation")
        add("veracity", "validation status", validation.status, "", "latest validation")
    if ingest and ingest.records_read:
        read = ingest.records_read
        add("veracity", "quarantined", 100.0 * ingest.quarantined / read, "% of records read", "ingest.json")
        add("veracity", "duplicates removed", 100.0 * ingest.duplicates_removed / read, "% of records read",
            "ingest.json")
        add("veracity", "reconciled", str(bool(ingest.reconciled)).lower(),
            "records read = silver + quarantined + duplicates", "ingest.json")
    run = model.run
    if run:
        auc, pr, rate = run.get("roc_auc"), run.get("pr_auc"), run.get("positive_rate")
        if auc is not None:
            add("value", "ROC AUC lift over chance", auc - 0.5, "AUC points", f"MLflow run {run['run_id']}")
        if pr is not None and rate:
            add("value", "PR AUC lift over the base rate", pr / rate, "x", f"MLflow run {run['run_id']}")
        if run.get("accuracy") is not None and run.get("baseline_accuracy") is not None:
            add("value", "accuracy over the majority baseline", run["accuracy"] - run["baseline_accuracy"],
                "points", f"MLflow run {run['run_id']}")
        if run.get("oracle_gap") is not None:
            add("value", "ROC AUC gap to the true probabilities", run["oracle_gap"], "AUC points",
                f"MLflow run {run['run_id']}")
        for c in [c for c in model.coefficients if abs(c["coefficient"]) >= 1e-6][:3]:
            direction = "raises" if c["coefficient"] > 0 else "lowers"
            add("value", f"insight: {c['feature']} {direction} the odds of a purchase", c["odds_ratio"],
                "odds ratio per standard deviation", "coefficients.csv")
    return rows


# -- writing --------------------------------------------------------------------------------
def iso(value: Any) -> str:
    """A timestamp as ISO-8601 UTC with milliseconds; naive values are UTC (Spark's session zone)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomically(path: Path, write: Any) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        write(f)
    return path


def write_rows(path: Path, header: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> Path:
    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=list(header), lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return _write_atomically(path, write)


def write_frame(frame: "pd.DataFrame", path: Path) -> Path:
    """A pandas frame as CSV; datetime columns as ISO-8601 UTC strings."""
    import pandas as pd

    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].map(iso)
    return _write_atomically(path, lambda f: frame.to_csv(f, index=False, lineterminator="\n"))


def run_report(spark: "SparkSession", settings: Settings) -> list[Path]:
    """Write every report of :data:`REPORT_FILES` into ``paths.reports`` (created if missing).

    Returns:
        The paths written.

    Raises:
        PipelineError: Silver is missing or empty, ``report.ip_mode`` is ``hash`` without a key,
            or the MLflow store cannot be read.
    """
    pseudonym = pseudonymiser(settings)  # a missing key fails before any Spark work
    model = model_info(settings)
    silver = read_silver(spark, settings).persist()
    sessions = session_table(silver).persist()
    out = reports_folder(settings)
    try:
        tables = lake_tables(silver, sessions, int(settings["report"]["top_users"]))
    finally:
        sessions.unpersist()
        silver.unpersist()
    frames = {**tables.frames, "traffic_per_minute": traffic_per_minute(spark, settings),
              **session_frames(tables.sessions, tables.users, pseudonym)}
    produce = read_manifest(produce_manifest_path(settings), ProduceManifest)
    ingest = read_manifest(ingest_summary_path(settings), IngestSummary)
    validation = read_manifest(validation_gate_path(settings), ValidationGate)
    totals = tables.totals
    vs = five_vs(settings, silver_rows=int(totals["events"]), traffic_seconds=traffic_seconds(totals), model=model,
                 validation=validation, produce=produce, ingest=ingest)
    written = write_tables(out, frames, tables.funnel, model, vs)
    quality_csv = out / "data_quality.csv"
    data = ReportData(out=out, kpis=kpis(totals, tables.funnel, ingest, model.run), frames=frames,
                      funnel=tables.funnel, five_vs=vs, model=model, validation=validation, ingest=ingest,
                      quality=read_quality(quality_csv), links=links(settings, out, model),
                      generated_at=iso(datetime.now(timezone.utc)))
    written.append(write_dashboard(data, dashboard_options(settings), out / "index.html"))
    log.info("reports in %s (%d files, %d MLflow runs)", out, len(written), len(model.runs))
    return written


# -- the steps of run_report ----------------------------------------------------------------
def pseudonymiser(settings: Settings) -> Any:
    """What reports show instead of an address, per ``report.ip_mode`` (see :mod:`.privacy`).

    Raises:
        ConfigError: An unknown mode, or ``hash`` without its key in the environment.
    """
    conf = settings["report"]
    return ip_pseudonymiser(conf["ip_mode"], conf["ip_hash_key_env"])


def dashboard_options(settings: Settings) -> DashboardOptions:
    conf = settings["report"]
    return DashboardOptions(top_pages=int(conf["top_pages"]), profile=settings["profile"], ip_mode=conf["ip_mode"])


def reports_folder(settings: Settings) -> Path:
    """``paths.reports``, created if missing."""
    out = settings.path("reports")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"cannot create {out}: {exc.strerror}") from exc
    return out


@dataclass
class LakeTables:
    """What the reports take from silver and the session table (collected to the driver)."""

    totals: Any                            # events, users, first and last event time
    frames: dict[str, "pd.DataFrame"]      # the traffic_by_* tables
    funnel: list[dict[str, Any]]
    users: "pd.DataFrame"                  # the top users
    sessions: "pd.DataFrame"               # every session, by start time


def lake_tables(silver: "DataFrame", sessions: "DataFrame", top: int) -> LakeTables:
    """The aggregates of silver and of its sessions the reports show."""
    from pyspark.sql import functions as F

    totals = silver.agg(F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users"),
                        F.min("timestamp").alias("first"), F.max("timestamp").alias("last")).first()
    frames = {
        "traffic_by_page": traffic_by_page(silver).toPandas(),
        "traffic_by_device": traffic_by(silver, "device_type").toPandas(),
        "traffic_by_browser": traffic_by(silver, "browser").toPandas(),
        "traffic_by_local_hour": traffic_by_local_hour(silver).toPandas(),
    }
    steps = funnel(sessions)
    users = top_users(sessions, top).toPandas()
    summary = sessions.orderBy("start_time", "session_id").toPandas()
    return LakeTables(totals, frames, steps, users, summary)


def traffic_per_minute(spark: "SparkSession", settings: Settings) -> "pd.DataFrame":
    """Gold's per-minute windows (no rows, the same columns, when there is no gold table)."""
    import pandas as pd

    if has_table(settings.path("gold")):
        return (read_table(spark, settings, "gold").drop("event_date")
                .orderBy("window_start", "device_type", "action_type").toPandas())
    return pd.DataFrame(columns=["window_start", "window_end", "device_type", "action_type", "events", "users",
                                 "sessions"])


def session_frames(summary: "pd.DataFrame", users: "pd.DataFrame",
                   pseudonym: Any) -> dict[str, "pd.DataFrame"]:
    """``sessions_summary`` and ``top_users`` as written: durations in seconds, IP addresses as
    pseudonyms, users ranked."""
    summary["duration_s"] = summary.pop("duration_ms") / 1000.0
    summary["ip_pseudonym"] = summary.pop("ip_address").map(pseudonym)
    users["ip_pseudonym"] = users.pop("ip_address").map(pseudonym)
    users.insert(0, "rank", range(1, len(users) + 1))
    return {"sessions_summary": summary[["session_id", "user_id", "start_time", "end_time", "duration_s", "events",
                                         "pages", "device_type", "browser", "timezone", "ip_pseudonym",
                                         "product_view", "add_to_cart", "checkout", "purchase", "is_late"]],
            "top_users": users}


def traffic_seconds(totals: Any) -> float:
    """The time between the first and the last event (0 for an empty lake)."""
    return (totals["last"] - totals["first"]).total_seconds() if totals["first"] is not None else 0.0


def write_tables(out: Path, frames: dict[str, "pd.DataFrame"], steps: list[dict[str, Any]], model: ModelInfo,
                 vs: list[dict[str, Any]]) -> list[Path]:
    """Every CSV of the report; returns their paths."""
    written = [write_frame(frame, out / f"{name}.csv") for name, frame in frames.items()]
    written.append(write_rows(out / "funnel.csv", ("step", "stage", "meaning", "sessions", "share_of_sessions",
                                                   "conversion_from_previous"), steps))
    written.append(write_rows(out / "model_metrics.csv", MODEL_METRICS_HEADER, model.runs))
    written.append(write_rows(out / "coefficients.csv", COEFFICIENTS_HEADER, model.coefficients))
    written.append(write_rows(out / "five_vs.csv", FIVE_VS_HEADER, vs))
    return written


def read_quality(path: Path) -> list[dict[str, str]]:
    """The rows of validate's ``data_quality.csv`` (none when validate has not run)."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def kpis(totals: Any, steps: list[dict[str, Any]], ingest: IngestSummary | None,
         run: dict[str, Any] | None) -> dict[str, Any]:
    """The dashboard's headline figures."""
    sessions_n = steps[0]["sessions"]
    read = (ingest.records_read if ingest else 0) or 0
    run = run or {}
    return {
        "events": int(totals["events"]), "users": int(totals["users"]), "sessions": sessions_n,
        "conversion_rate": steps[-1]["sessions"] / sessions_n if sessions_n else 0.0,
        "quarantine_rate": ingest.quarantined / read if ingest and read else None,
        "roc_auc": run.get("roc_auc"), "oracle_roc_auc": run.get("oracle_roc_auc"),
        "first_event": iso(totals["first"]), "last_event": iso(totals["last"]),
    }


def links(settings: Settings, out: Path, model: ModelInfo) -> dict[str, str]:
    """The dashboard's links to the other outputs ("" for one that is not there)."""
    run = model.run or {}
    ui = settings["report"]["mlflow_ui_url"] or f"http://127.0.0.1:{settings['mlflow']['ui_port']}"
    return {"data_docs": "data_docs/index.html" if (out / "data_docs" / "index.html").is_file() else "",
            "predictions": "predictions.csv" if (out / "predictions.csv").is_file() else "",
            "data_quality": "data_quality.csv" if (out / "data_quality.csv").is_file() else "",
            "mlflow_run": (f"{ui.rstrip('/')}/#/experiments/{model.experiment_id}/runs/{run['run_id']}"
                           if run else "")}
