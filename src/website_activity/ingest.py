"""Ingest: Kafka (both topics) -> typed Parquet in ``paths.silver``, bad records in ``paths.quarantine``.

One Structured Streaming read of the topics feeds a ``foreachBatch`` writer that splits each
micro-batch into parsed events (silver) and records that cannot be parsed (quarantine, with a
reason code). Exactly once: each batch writes into a folder named by its batch id, which is
replaced (not appended to) when Spark replays that batch after a crash, and a batch folder
becomes visible to readers only through its ``_SUCCESS`` marker, written last. Offsets are
committed to the checkpoint only after the batch's writes succeeded.

The transforms (:func:`parse_records`, :func:`split_valid`) are pure and unit-tested on
inline DataFrames; the reading and writing live in :func:`run_ingest`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from website_activity.config import Settings
from website_activity.errors import PipelineError, first_line
from website_activity.schema import field_names, required_fields, spark_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

KAFKA_COLUMNS = ("topic", "partition", "offset")


def parse_records(raw: "DataFrame", settings: Settings) -> "DataFrame":
    """Parse Kafka records into the declared schema.

    Args:
        raw: Kafka rows with at least ``value`` (binary or string), ``topic``, ``partition``,
            ``offset``.
        settings: Gives ``schema.fields``.

    Returns:
        One row per record: the typed fields, ``topic``, ``partition``, ``offset``,
        ``ingest_time``, the raw ``value`` as a string, and ``quarantine_reason`` (null when the
        record is a valid event; else ``not_json``, ``missing_field:<name>`` or ``bad_type:<name>``).
    """
    from pyspark.sql import functions as F

    fields = settings.schema_fields
    schema = spark_schema(fields)
    value = F.col("value").cast("string")
    parsed = F.from_json(value, schema, {"mode": "PERMISSIVE"})
    # The same JSON read as strings tells "absent" apart from "present but of the wrong type".
    as_strings = F.from_json(value, "map<string,string>", {"mode": "PERMISSIVE"})
    df = raw.select(
        value.alias("value"), *[F.col(c) for c in KAFKA_COLUMNS],
        parsed.alias("e"), as_strings.alias("m"), F.current_timestamp().alias("ingest_time"),
    )
    checks = [F.when(F.col("m").isNull(), F.lit("not_json"))]
    for name in required_fields(fields):
        checks.append(F.when(F.col("m").getItem(name).isNull(), F.lit(f"missing_field:{name}")))
    for name in field_names(fields):
        checks.append(F.when(F.col("m").getItem(name).isNotNull() & F.col(f"e.{name}").isNull(),
                             F.lit(f"bad_type:{name}")))
    return df.select(
        *[F.col(f"e.{n}").alias(n) for n in field_names(fields)],
        *KAFKA_COLUMNS, "ingest_time", "value",
        F.coalesce(*checks).alias("quarantine_reason"),
    )


def split_valid(parsed: "DataFrame", settings: Settings) -> tuple["DataFrame", "DataFrame"]:
    """Split parsed records into (silver rows, quarantine rows)."""
    from pyspark.sql import functions as F

    names = field_names(settings.schema_fields)
    good = parsed.where(F.col("quarantine_reason").isNull())
    silver = good.select(*names, *KAFKA_COLUMNS, "ingest_time",
                         F.to_date("timestamp").alias("event_date"))
    quarantine = parsed.where(F.col("quarantine_reason").isNotNull()).select(
        "value", F.col("quarantine_reason").alias("reason"), *KAFKA_COLUMNS, "ingest_time")
    return silver, quarantine


@dataclass
class IngestResult:
    batches: int
    input_rows: int
    silver_rows: int
    quarantined_rows: int
    seconds: float


def read_kafka_stream(spark: "SparkSession", settings: Settings) -> "DataFrame":
    s = settings["spark"]
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("subscribe", ",".join(settings.topics))
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
        .option("maxOffsetsPerTrigger", str(s["max_offsets_per_trigger"]))
        .option("kafka.request.timeout.ms", str(settings["kafka"]["request_timeout_s"] * 1000))
        .option("kafka.default.api.timeout.ms", str(settings["kafka"]["request_timeout_s"] * 1000))
        .load()
    )


def run_ingest(spark: "SparkSession", settings: Settings) -> IngestResult:
    """Consume everything available in the topics (``availableNow``) into silver and quarantine.

    Raises:
        PipelineError: The broker cannot be reached, or the streaming query fails.
    """
    from website_activity.lake import write_batch

    silver_path = settings.path("silver")
    quarantine_path = settings.path("quarantine")
    checkpoint = settings.path("checkpoints") / "ingest"
    totals = {"batches": 0, "input": 0, "silver": 0, "quarantine": 0}

    def process(batch: "DataFrame", batch_id: int) -> None:
        parsed = parse_records(batch, settings).persist()
        try:
            silver, quarantine = split_valid(parsed, settings)
            n_silver = write_batch(silver, silver_path, batch_id, partition_by="event_date")
            n_quar = write_batch(quarantine, quarantine_path, batch_id)
        finally:
            parsed.unpersist()
        totals["batches"] += 1
        totals["input"] += n_silver + n_quar
        totals["silver"] += n_silver
        totals["quarantine"] += n_quar
        log.info("batch %d: %d events to silver, %d quarantined", batch_id, n_silver, n_quar)

    start = time.monotonic()
    for attempt in (1, 2):
        query = (
            read_kafka_stream(spark, settings).writeStream.foreachBatch(process)
            .option("checkpointLocation", str(checkpoint))
            .trigger(availableNow=True)
            .queryName("ingest")
            .start()
        )
        try:
            query.awaitTermination()
            break
        except Exception as exc:  # py4j/pyspark wrap the JVM error: keep its first line only
            if attempt == 1 and _is_replay_metrics_bug(exc):
                # Spark 4.1's Kafka source fails while reporting progress of a batch replayed from
                # the checkpoint (one that ran but was not committed before a crash). The batch
                # itself was written and committed by then: starting the query again goes on.
                log.warning("Spark's Kafka source failed reporting a replayed batch; restarting the query")
                continue
            raise PipelineError(f"streaming ingest failed: {first_line(exc)}") from exc
    return IngestResult(totals["batches"], totals["input"], totals["silver"], totals["quarantine"],
                        time.monotonic() - start)


def _is_replay_metrics_bug(exc: BaseException) -> bool:
    return 'because the return value of "scala.Option.get()" is null' in str(exc)
