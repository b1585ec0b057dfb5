"""Idempotent micro-batch writes into the Parquet lake (local or shared file system).

Each micro-batch is written by Spark into ``<table>/_staging/batch-N`` (Spark's readers skip
folders starting with ``_``), then each file is moved into its partition folder under a name
that starts with the batch id. When Spark replays batch N after a crash (the checkpoint had
not committed it), the files of batch N already in the table are removed first, so a record
is never kept twice and never lost.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from website_activity.config import Settings
from website_activity.errors import PipelineError, first_line

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def batch_prefix(batch_id: int) -> str:
    return f"batch-{batch_id:010d}-"


def write_batch(df: "DataFrame", table: Path, batch_id: int, partition_by: str | None = None) -> int:
    """Write one micro-batch into ``table``, replacing any earlier attempt of the same batch.

    Args:
        df: The rows of the batch (persist it: it is counted, then written).
        table: The table's folder.
        batch_id: Structured Streaming's batch id.
        partition_by: Optional partition column (a ``col=value`` folder per value).

    Returns:
        The number of rows written.
    """
    rows = df.count()
    prefix = batch_prefix(batch_id)
    for old in table.rglob(f"{prefix}*"):
        if "_staging" not in old.parts:
            old.unlink()
    if rows == 0:
        return 0
    staging = table / "_staging" / f"batch-{batch_id}"
    shutil.rmtree(staging, ignore_errors=True)
    writer = df.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.parquet(str(staging))
    for part in sorted(staging.rglob("*.parquet")):
        dest_dir = table / part.parent.relative_to(staging)
        dest_dir.mkdir(parents=True, exist_ok=True)
        part.replace(dest_dir / f"{prefix}{part.name}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()  # the _staging folder, once no batch is in flight
    except OSError:
        pass
    return rows


def has_parquet(table: Path) -> bool:
    """True when ``table`` holds a Parquet file that Spark would read.

    Spark skips paths starting with ``_`` or ``.`` (ingest's ``_staging`` folder): so do we.
    """
    for part in table.rglob("*.parquet"):
        if not any(p.startswith(("_", ".")) for p in part.relative_to(table).parts):
            return True
    return False


def silver_path(settings: Settings) -> Path:
    """The silver table's folder, checked before any Spark work (scripts call it first).

    Raises:
        PipelineError: It does not exist or holds no Parquet file yet.
    """
    path = settings.path("silver")
    if not path.is_dir() or not has_parquet(path):
        raise PipelineError(f"no data in {path}: run make ingest first")
    return path


def read_silver(spark: "SparkSession", settings: Settings) -> "DataFrame":
    """The silver table as one DataFrame.

    Raises:
        PipelineError: The table is missing, holds no Parquet file, or cannot be read.
    """
    path = silver_path(settings)
    try:
        return spark.read.parquet(str(path))
    except Exception as exc:  # pyspark's AnalysisException carries a JVM trace: keep one line
        raise PipelineError(f"cannot read {path}: {first_line(exc)}") from exc


def _visible_parquet(table: Path) -> list[Path]:
    if not table.is_dir():
        return []
    return sorted(p for p in table.rglob("*.parquet")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(table).parts))


def lake_fingerprint(settings: Settings) -> str:
    """A digest of the files Spark would read from silver and quarantine (path, size, mtime).

    The quality gate records it with each validation; training compares it with the lake as
    it is then, so data ingested after the validation is not trained on unvalidated.
    """
    digest = hashlib.sha256()
    for key in ("silver", "quarantine"):
        table = settings.path(key)
        for part in _visible_parquet(table):
            st = part.stat()
            digest.update(f"{key}/{part.relative_to(table).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()


def read_quarantine_count(spark: "SparkSession", settings: Settings) -> int:
    """Rows in the quarantine table; 0 when nothing was ever quarantined (no table)."""
    path = settings.path("quarantine")
    if not has_parquet(path):
        return 0
    try:
        return spark.read.parquet(str(path)).count()
    except Exception as exc:  # one line, not a JVM trace
        raise PipelineError(f"cannot read {path}: {first_line(exc)}") from exc
