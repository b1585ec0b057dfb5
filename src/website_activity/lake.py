"""Idempotent micro-batch writes into the Parquet lake (local or shared file system).

Each micro-batch is written by Spark into ``<table>/_staging/batch-N`` (Spark's readers skip
folders starting with ``_``), then each file is moved into its partition folder under a name
that starts with the batch id. When Spark replays batch N after a crash (the checkpoint had
not committed it), the files of batch N already in the table are removed first, so a record
is never kept twice and never lost.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


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
