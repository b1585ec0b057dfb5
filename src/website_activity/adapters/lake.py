"""The lake's tables on Delta Lake: idempotent micro-batch writes, readers, statistics, compaction.

Every table (bronze, silver, quarantine, gold) is a Delta table: a folder of Parquet files and
a transaction log (``_delta_log``) that says which files make up each version. A micro-batch is
written with Delta's idempotent writes: the writer options ``txnAppId`` (an id created with the
streaming checkpoint, :func:`website_activity.stages.ingest.checkpoint_app_id`) and ``txnVersion`` (the
batch id). Delta records the pair in the commit, atomically with the batch's files, and skips a
later write of the same pair: a batch replayed after a crash lands once. A crashed write leaves
at most files that no commit names, which no Delta reader sees (VACUUM removes them).

Read the tables as Delta tables (:func:`read_table`): a plain Parquet reader of these folders
also reads the files that OPTIMIZE replaced and that crashed writes left, so it counts rows twice.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.adapters.failpoints import failpoint

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

LOG = "_delta_log"
TABLES = ("bronze", "silver", "quarantine", "gold")
_COMMIT = re.compile(r"^(\d{20})\.json$")


# -- the transaction log, read without Spark -------------------------------------------------
def is_table(path: Path) -> bool:
    """True when ``path`` is a Delta table with at least one commit."""
    return table_version(path) is not None


def table_version(path: Path) -> int | None:
    """The latest committed version of the Delta table at ``path`` (None: no table there)."""
    try:
        names = [m.group(1) for m in map(_COMMIT.match, (p.name for p in (path / LOG).iterdir())) if m]
    except OSError:
        return None
    return max(int(n) for n in names) if names else None


def _commit_actions(path: Path, version: int) -> list[dict[str, Any]]:
    try:
        text = (path / LOG / f"{version:020d}.json").read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def txn_commit(path: Path, app_id: str, batch_id: int) -> dict[str, Any] | None:
    """The ``commitInfo`` of the commit that wrote batch ``batch_id`` of ``app_id``, or None.

    Searches the log from its newest commit back to the first commit of an earlier batch of the
    same app (a table's commits of one app come in batch order).
    """
    latest = table_version(path)
    if latest is None:
        return None
    for version in range(latest, -1, -1):
        actions = _commit_actions(path, version)
        txns = [a["txn"] for a in actions if "txn" in a and a["txn"].get("appId") == app_id]
        if not txns:
            continue
        if txns[0]["version"] == batch_id:
            return next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        if txns[0]["version"] < batch_id:
            return None
    return None


def committed_batches(path: Path) -> set[int]:
    """The batch ids (``txnVersion``) that have a commit in the table, whatever the app id."""
    latest = table_version(path)
    return {a["txn"]["version"] for v in range(0 if latest is None else latest + 1)
            for a in _commit_actions(path, v) if "txn" in a}


def committed_rows(path: Path, app_id: str, batch_id: int) -> int | None:
    """Rows that batch ``batch_id`` of ``app_id`` added to the table (None: not committed)."""
    info = txn_commit(path, app_id, batch_id)
    if info is None:
        return None
    return int((info.get("operationMetrics") or {}).get("numOutputRows", 0))


def commit_metadata(path: Path, app_id: str, batch_id: int) -> dict[str, Any] | None:
    """The ``userMetadata`` (JSON) of the commit of batch ``batch_id`` (None: not committed)."""
    info = txn_commit(path, app_id, batch_id)
    if info is None:
        return None
    try:
        return json.loads(info.get("userMetadata") or "{}")
    except ValueError:
        return {}


# -- writes ------------------------------------------------------------------------------------
def write_batch(df: "DataFrame", table: Path, batch_id: int, partition_by: str | None = None, *,
                app_id: str = "website-activity", replace_where: str | None = None,
                optimize_write: bool | None = None, metadata: dict[str, Any] | None = None,
                stats_columns: Sequence[str] | None = None) -> int:
    """Write one micro-batch into the Delta table ``table``, once whatever the replays.

    Args:
        df: The rows of the batch (evaluated once, by the write).
        table: The table's folder (created on the first write, with the session's table defaults:
            ``adapters.spark.DELTA_CONF``).
        batch_id: Structured Streaming's batch id (Delta's ``txnVersion``).
        partition_by: Optional partition column.
        app_id: Delta's ``txnAppId``: a new id for a new checkpoint (batch ids restart at 0).
        replace_where: Overwrite the rows matching this predicate instead of appending.
        optimize_write: Override the table's ``optimizeWrite`` (False where the rows were
            already shuffled into one task per partition value).
        metadata: Kept as JSON in the commit's ``userMetadata``.
        stats_columns: When the write creates the table: the columns Delta keeps file statistics
            of (``delta.dataSkippingStatsColumns``; default: the first 32). Statistics of a long
            text or binary column (a raw Kafka value) cost more than the rest of the write and
            skip nothing.

    Returns:
        The rows the batch added, from its commit (also when the write was a replay Delta skipped).
    """
    rows = committed_rows(table, app_id, batch_id)
    if rows is not None:  # a replay: Delta would skip it too, but would not say how many rows
        return rows
    writer = (df.write.format("delta").mode("overwrite" if replace_where else "append")
              .option("txnAppId", app_id).option("txnVersion", str(batch_id)))
    if replace_where:
        writer = writer.option("replaceWhere", replace_where)
    if optimize_write is not None:
        writer = writer.option("optimizeWrite", str(optimize_write).lower())
    if metadata is not None:
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True))
    if stats_columns and table_version(table) is None:  # a table property: set when the write creates it
        writer = writer.option("delta.dataSkippingStatsColumns", ",".join(stats_columns))
    if partition_by:
        writer = writer.partitionBy(partition_by)
    failpoint(f"{table.name}.before_commit")  # crash tests: nothing of the batch committed here yet
    writer.save(str(table))
    failpoint(f"{table.name}.committed")  # crash tests: the commit is in the log, the batch not done
    return committed_rows(table, app_id, batch_id) or 0


# -- the table state of the next write, computed ahead --------------------------------------------
_warming: list[threading.Thread] = []


def warm_state(spark: "SparkSession", table: Path) -> None:
    """Compute, in a background thread, the Delta state that the next idempotent write of
    ``table`` needs, so that write does not wait for it.

    A write with ``txnAppId`` asks the table's snapshot for its transactions, and a snapshot made
    by a commit has not computed them yet: each such write started with two Spark jobs over the
    log (``Compute snapshot for version``, about 0.5 s per table on 2 cores). Called right after
    a commit, the jobs run while the batch goes on (the next table, the wait for the next
    trigger); the next write finds them done (Delta computes a snapshot's state once; a write
    that comes first waits for it instead of computing it twice). Only a cache: a failure is
    logged, never raised, and the write computes the state itself.
    """
    jvm = spark.sparkContext._jvm
    jspark = spark._jsparkSession

    def run() -> None:
        try:
            delta_log = getattr(getattr(jvm.org.apache.spark.sql.delta, "DeltaLog$"), "MODULE$")
            delta_log.forTable(jspark, str(table)).unsafeVolatileSnapshot().setTransactions()
        except Exception as exc:  # noqa: BLE001 - a cache: the next write computes it itself
            log.debug("could not compute the state of %s ahead: %s", table, first_line(exc))

    _warming[:] = [t for t in _warming if t.is_alive()]
    thread = threading.Thread(target=run, name=f"delta-state-{table.name}", daemon=True)
    _warming.append(thread)
    thread.start()


def settle() -> None:
    """Wait for the state computations :func:`warm_state` started (before the session stops)."""
    while _warming:
        _warming.pop().join()


# -- readers -------------------------------------------------------------------------------------
def read_delta(spark: "SparkSession", path: Path, version: int | None = None) -> "DataFrame":
    """The Delta table at ``path`` (at ``version``: time travel), as a DataFrame.

    Raises:
        PipelineError: No table there, or it cannot be read.
    """
    if not is_table(path):
        raise PipelineError(f"no data in {path}: run make ingest first")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    try:
        return reader.load(str(path))
    except Exception as exc:  # pyspark's AnalysisException carries a JVM trace: keep one line
        raise PipelineError(f"cannot read {path}: {first_line(exc)}") from exc


def read_table(spark: "SparkSession", settings: Settings, name: str, version: int | None = None) -> "DataFrame":
    """One of the lake's tables (``bronze``, ``silver``, ``quarantine``, ``gold``) by name."""
    return read_delta(spark, settings.path(name), version)


def has_table(path: Path) -> bool:
    """True when ``path`` holds a Delta table (a table ingest wrote at least once)."""
    return is_table(path)


def silver_path(settings: Settings) -> Path:
    """The silver table's folder, checked before any Spark work (scripts call it first).

    Raises:
        PipelineError: It does not exist or holds no Delta table yet.
    """
    path = settings.path("silver")
    if not is_table(path):
        raise PipelineError(f"no data in {path}: run make ingest first")
    return path


def read_silver(spark: "SparkSession", settings: Settings, version: int | None = None) -> "DataFrame":
    """The silver table (at ``version``, else the latest) as one DataFrame.

    Raises:
        PipelineError: The table is missing or cannot be read.
    """
    return read_delta(spark, silver_path(settings), version)


def read_quarantine_count(spark: "SparkSession", settings: Settings, version: int | None = None) -> int:
    """Rows in the quarantine table; 0 when nothing was ever quarantined (no table)."""
    path = settings.path("quarantine")
    if not is_table(path):
        return 0
    try:
        return read_delta(spark, path, version).count()
    except Exception as exc:  # one line, not a JVM trace
        raise PipelineError(f"cannot read {path}: {first_line(exc)}") from exc


def table_stats(table: Path) -> dict[str, int]:
    """Files, bytes, average file size and rows of the table's latest version (from its log,
    with delta-rs: no Spark job)."""
    if not is_table(table):
        return {"files": 0, "bytes": 0, "avg_file_bytes": 0, "rows": 0, "version": -1}
    import pyarrow as pa
    from deltalake import DeltaTable

    dt = DeltaTable(str(table))
    adds = pa.table(dt.get_add_actions(flatten=True))
    files = adds.num_rows
    size = sum(adds.column("size_bytes").to_pylist()) if files else 0
    rows = sum(n or 0 for n in adds.column("num_records").to_pylist()) if files else 0
    return {"files": files, "bytes": size, "avg_file_bytes": size // files if files else 0, "rows": rows,
            "version": dt.version()}


def lake_versions(settings: Settings) -> dict[str, int | None]:
    """The latest version of silver and quarantine (None: no table yet), from their logs."""
    return {key: table_version(settings.path(key)) for key in ("silver", "quarantine")}


def lake_fingerprint(settings: Settings) -> str:
    """The versions of silver and quarantine, as one string (``silver@12 quarantine@7``).

    The quality gate records it with each validation; training compares it with the lake as
    it is then: any commit since (an ingest, a compaction) makes the validation stale.
    """
    return " ".join(f"{k}@{'none' if v is None else v}" for k, v in lake_versions(settings).items())


# -- maintenance ---------------------------------------------------------------------------------
def compact_table(spark: "SparkSession", path: Path, retention_hours: float) -> dict[str, Any]:
    """OPTIMIZE (bin-packing small files) then VACUUM (files no version newer than the retention
    needs). Both are Delta transactions: a crash in either leaves the table as it was, at worst
    with unreferenced files that the next VACUUM removes."""
    before = table_stats(path)
    failpoint("compact.optimize")  # crash tests: a kill while OPTIMIZE runs
    spark.sql(f"OPTIMIZE delta.`{path}`").collect()
    failpoint("compact.vacuum")
    spark.sql(f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS").collect()
    after = table_stats(path)
    return {"files_before": before["files"], "files_after": after["files"], "rows": after["rows"],
            "version": after["version"]}
