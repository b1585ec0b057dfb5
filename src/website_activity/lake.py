"""Idempotent micro-batch writes into the Parquet lake (local or shared file system).

Each micro-batch is written by Spark into ``<table>/_staging/batch-N`` (Spark's readers skip
folders starting with ``_``), then each file is moved into its partition folder under a name
that starts with the batch id, and a marker ``<table>/_batches/N`` records the batch's row count
last. When Spark replays batch N after a crash (the checkpoint had not committed it), the files
of batch N already in the table are removed first, so a record is never kept twice and never
lost; a table written with ``keep_existing`` (bronze: never rewritten) keeps a batch whose marker
is there and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from website_activity.config import Settings
from website_activity.errors import PipelineError, first_line
from website_activity.failpoints import failpoint

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

MARKERS = "_batches"


def batch_prefix(batch_id: int) -> str:
    return f"batch-{batch_id:010d}-"


def _marker(table: Path, batch_id: int) -> Path:
    return table / MARKERS / str(batch_id)


def committed_rows(table: Path, batch_id: int) -> int | None:
    """The row count of batch ``batch_id`` in ``table`` if it was written completely, else None."""
    try:
        return int(_marker(table, batch_id).read_text())
    except (OSError, ValueError):
        return None


def batch_files(table: Path, batch_id: int) -> list[Path]:
    """The visible Parquet files of one batch (outside ``_staging``)."""
    return [p for p in visible_parquet(table) if p.name.startswith(batch_prefix(batch_id))]


def parquet_rows(files: Iterable[Path]) -> int:
    """Rows in Parquet files, from their footers (no Spark job)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def discard_batch(table: Path, batch_id: int) -> None:
    """Remove whatever an interrupted attempt of batch ``batch_id`` left in ``table``."""
    _marker(table, batch_id).unlink(missing_ok=True)
    for old in batch_files(table, batch_id):
        old.unlink()
    shutil.rmtree(table / "_staging" / f"batch-{batch_id}", ignore_errors=True)


def write_batch(df: "DataFrame", table: Path, batch_id: int, partition_by: str | None = None, *,
                files_per_partition: int | None = None, keep_existing: bool = False) -> int:
    """Write one micro-batch into ``table``, replacing any earlier attempt of the same batch.

    Args:
        df: The rows of the batch (it is evaluated once, by the write).
        table: The table's folder.
        batch_id: Structured Streaming's batch id.
        partition_by: Optional partition column (a ``col=value`` folder per value).
        files_per_partition: Shuffle the rows so that each partition value gets this many files
            (None: one file per task and partition value, as Spark writes them).
        keep_existing: Keep a batch that was completely written before (its marker is there)
            instead of writing it again.

    Returns:
        The number of rows of the batch in the table (counted from the written files' footers).
    """
    from pyspark.sql import functions as F

    if keep_existing:
        rows = committed_rows(table, batch_id)
        if rows is not None:
            return rows
    marker = _marker(table, batch_id)
    discard_batch(table, batch_id)
    staging = table / "_staging" / f"batch-{batch_id}"
    if files_per_partition and partition_by:
        if files_per_partition == 1:
            df = df.repartition(partition_by)
        else:
            salt = F.pmod(F.xxhash64(*df.columns), F.lit(files_per_partition))
            df = df.repartition(partition_by, salt)
    writer = df.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.parquet(str(staging))
    failpoint(f"{table.name}.staged")  # crash tests: the batch's files written, none in the table yet
    parts = sorted(staging.rglob("*.parquet"))
    rows = parquet_rows(parts)
    for part in parts:
        dest_dir = table / part.parent.relative_to(staging)
        dest_dir.mkdir(parents=True, exist_ok=True)
        part.replace(dest_dir / f"{batch_prefix(batch_id)}{part.name}")
    failpoint(f"{table.name}.moved")  # crash tests: files in the table, the batch's marker not yet
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()  # the _staging folder, once no batch is in flight
    except OSError:
        pass
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(str(rows))
    tmp.replace(marker)
    return rows


def read_batch(spark: "SparkSession", table: Path, batch_id: int) -> "DataFrame":
    """The rows one batch wrote into ``table`` (partition columns included)."""
    files = batch_files(table, batch_id)
    return spark.read.option("basePath", str(table)).parquet(*[str(f) for f in files])


def read_partitions(spark: "SparkSession", table: Path, column: str, values: Iterable[str],
                    columns: list[str]) -> "DataFrame | None":
    """``columns`` of the partitions ``column=value`` of ``table`` that exist (None: none does)."""
    dirs = [table / f"{column}={v}" for v in sorted(set(values))]
    dirs = [d for d in dirs if d.is_dir() and any(not p.name.startswith(("_", ".")) for p in d.glob("*.parquet"))]
    if not dirs:
        return None
    return spark.read.option("basePath", str(table)).parquet(*[str(d) for d in dirs]).select(*columns)


def replace_table(df: "DataFrame", table: Path, partition_by: str | None = None) -> int:
    """Write ``df`` as the whole of ``table``, swapping it in only once it is complete.

    Returns:
        The number of rows written.
    """
    new = table.with_name(f".{table.name}.new")
    old = table.with_name(f".{table.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    writer = df.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.parquet(str(new))
    rows = parquet_rows(new.rglob("*.parquet"))
    shutil.rmtree(old, ignore_errors=True)
    if table.exists():
        table.replace(old)
    new.replace(table)
    shutil.rmtree(old, ignore_errors=True)
    return rows


def read_json(path: Path) -> dict[str, Any] | None:
    """A run manifest or summary (``data/_runs/*.json``, ``latest.json``), or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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


def visible_parquet(table: Path) -> list[Path]:
    """The Parquet files Spark would read from ``table`` (none under ``_`` or ``.`` folders)."""
    if not table.is_dir():
        return []
    return sorted(p for p in table.rglob("*.parquet")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(table).parts))


_visible_parquet = visible_parquet


def table_stats(table: Path) -> dict[str, int]:
    """Files, bytes, average file size and rows of a table (from the file system and footers)."""
    files = visible_parquet(table)
    size = sum(f.stat().st_size for f in files)
    return {"files": len(files), "bytes": size, "avg_file_bytes": size // len(files) if files else 0,
            "rows": parquet_rows(files)}


def lake_fingerprint(settings: Settings) -> str:
    """A digest of the files Spark would read from silver and quarantine (path, size, mtime).

    The quality gate records it with each validation; training compares it with the lake as
    it is then, so data ingested after the validation is not trained on unvalidated.
    """
    digest = hashlib.sha256()
    for key in ("silver", "quarantine"):
        table = settings.path(key)
        for part in visible_parquet(table):
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
