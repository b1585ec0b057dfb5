"""Ingest: Kafka (both topics) -> bronze, silver, quarantine and gold, Delta tables of the lake.

One Structured Streaming query reads the topics (``startingOffsets=earliest`` for a new
checkpoint, ``failOnDataLoss=true``) and hands each micro-batch to :func:`process_batch`
(``foreachBatch``), which makes one Delta commit per table:

1. ``bronze``: every Kafka record as received (key, value, topic, partition, offset, Kafka
   timestamp, ingest time), partitioned by ``ingest_date``, written from the Kafka rows.
2. The records are parsed once (:func:`parse_records`, cached for the batch) and one job counts
   them (by reason, topic, event date, lateness).

Then three commits, each from cached rows and silver as it was before the batch (none reads
another's commit):

3. ``silver``: the valid events, typed, partitioned by ``event_date``, deduplicated on
   ``event_id`` within the batch (the record with the lowest topic, partition, offset wins) and
   against silver's rows in the event-time windows the batch touches (an anti-join: a duplicate
   is the same event re-sent, so it has the same event time; :func:`rows_in_windows`), then
   appended.
4. ``gold``: those per-minute windows, recomputed from the same silver rows plus the batch's new
   ones, and replaced: the cost follows the batch, not the lake.
5. ``quarantine``: records that fail parsing or a declared rule, with the raw value, a reason
   code (:data:`REASONS`), a human message, topic, partition, offset and ingest time.
6. A ledger entry ``<paths.runs>/ingest_batches/<N>.json`` with the batch's counts.

**Exactly once.** Spark records a batch's offsets before running it and commits it to the
checkpoint only after ``foreachBatch`` returns; after a crash it replays the uncommitted batch
with the same offsets, so the same records. Every commit of batch N carries Delta's
transaction id (``txnAppId`` = an id created with the checkpoint, ``txnVersion`` = N), written
atomically with its files: Delta skips a replayed write that it already committed, and a write
that did not commit left no visible rows. A replay therefore commits exactly what the first
attempt had not, and computes it from the same inputs: bronze's commit keeps the batch's ingest
time (the ``future_time`` rule uses it), silver's dedup and gold read silver before batch N (its
commit is all or nothing; if it is in and gold's is not, the dedup finds nothing new, silver's
write is skipped and gold is recomputed from the same rows), the watermark comes from the ledger
entry of batch N-1. Hence
``records_read = silver + quarantined + duplicates_removed`` over the ledger, with no
``event_id`` twice in silver. A new checkpoint gets a new app id (:func:`checkpoint_app_id`):
Delta would skip, silently, batch ids it saw under the old one.

**Watermark.** The watermark of batch N, per topic, is the latest event time of that topic in
batches < N (kept in the ledger) minus ``ingest.watermark_delay_s``, as Structured Streaming
defines it (per topic: each producer's clock is its own). Silver events older than it get
``is_late = true``: they stay in silver, are left out of gold, and are counted
(``gold_dropped_by_watermark``).

The transforms (:func:`parse_records`, :func:`split_valid`, :func:`deduplicate`,
:func:`gold_frame`) are pure and unit-tested on inline DataFrames; the reading and writing live in
:func:`process_batch` and :func:`run_ingest`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from website_activity.core.catalog import ingest_ledger_dir, ingest_summary_path
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.adapters.failpoints import failpoint
from website_activity.adapters.files import write_json, write_text
from website_activity.core.schema import NO_COORDINATE, field_names, required_fields
from website_activity.adapters.spark import spark_schema

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

KAFKA_COLUMNS = ("topic", "partition", "offset")
REASONS = {
    "too_large": "the value is larger than ingest.max_record_bytes (not parsed)",
    "null_value": "the record has no value (a tombstone)",
    "not_json": "the value is not a JSON object (not JSON, cut short, or another JSON type)",
    "missing_field:<f>": "a required field is absent or null",
    "bad_type:<f>": "a field does not parse as its declared type",
    "bad_enum:<f>": "a field's value is not in schema.enums",
    "out_of_viewport": "a click outside its device's viewport (validation.viewports)",
    "unexpected_coordinates": "an event that is not a click carries coordinates other than -1",
    "future_time": "the event time is after the ingest time plus validation.clock_skew_s",
    "bad_timezone": "the timezone is not a region-based zone ID of the JVM (Europe/Paris)",
}
"""Quarantine reason codes, checked in this order (a record gets the first that applies)."""
CORRUPT = "_corrupt_record"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}"


# -- pure transforms ------------------------------------------------------------------------
def parse_records(raw: "DataFrame", settings: Settings) -> "DataFrame":
    """Parse Kafka records into the declared schema and apply the quarantine rules.

    Args:
        raw: Kafka rows with at least ``value`` (binary or string), ``topic``, ``partition``,
            ``offset``; ``ingest_time`` and ``key`` when present (else now and null).
        settings: Gives ``schema``, ``validation`` and ``ingest.max_record_bytes``.

    Returns:
        One row per record: the typed fields, ``topic``, ``partition``, ``offset``,
        ``ingest_time``, ``key``, ``kafka_timestamp`` (null when ``raw`` has none), the raw ``value`` as a string (null for valid events: silver
        does not need it) and ``quarantine_reason`` (null for a valid event, else a code of
        :data:`REASONS`; :func:`split_valid` adds the message).
    """
    df = raw
    key = ("parse", _rules_key(settings), tuple(raw.columns))
    for columns in _cached(raw, key, lambda: _parse_stages(settings, raw.columns, jvm_time_zones(raw))):
        df = df.select(*columns)
    return df


def _rules_key(settings: Settings) -> str:
    """The settings the parse and the quarantine messages are built from, as one string."""
    return json.dumps([settings.schema_fields, settings["schema"]["enums"], settings["validation"],
                       settings["ingest"]["max_record_bytes"]], sort_keys=True, default=str)


def _cached(df: "DataFrame", key: Any, build: Callable[[], Any]) -> Any:
    """``build()``, kept per SparkContext under ``key``: the parse's few hundred column
    expressions are built once, not for every micro-batch (each is a call into the JVM: 0.7 s
    of a 10k-record batch's driver time went into building them again)."""
    sc = df.sparkSession.sparkContext
    cache = sc.__dict__.setdefault("_website_activity_columns", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _parse_stages(settings: Settings, columns: list[str], zones: tuple[str, ...]) -> list[list["Column | str"]]:
    """The selects of :func:`parse_records`, in order, for input ``columns``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    fields = settings.schema_fields
    names = field_names(fields)
    types = {f["name"]: f["type"] for f in fields}
    limit = settings["ingest"]["max_record_bytes"]
    value = F.col("value").cast("string")
    size = F.octet_length(F.col("value"))
    small = F.when(size <= limit, value)  # a value too large is not parsed at all
    ingest_time = F.col("ingest_time") if "ingest_time" in columns else F.current_timestamp()
    key = F.col("key").cast("string") if "key" in columns else F.lit(None).cast("string")
    # the Kafka append time (the producer's CreateTime): ingest measures latency from it
    kafka_time = F.col("kafka_timestamp") if "kafka_timestamp" in columns else F.lit(None).cast("timestamp")
    # One parse per record. Timestamps are read as text (then cast): Spark's JSON reader would
    # take a number as seconds since 1970, which the rules refuse. A field that does not parse as
    # its type leaves the record in the corrupt-record column (the other fields still parse).
    schema = StructType([StructField(f.name, StringType() if types[f.name] == "timestamp" else f.dataType, True)
                         for f in spark_schema(fields).fields] + [StructField(CORRUPT, StringType(), True)])
    parsed = F.from_json(small, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    stages: list[list["Column | str"]] = [[
        value.alias("value"), size.alias("size"), *[F.col(c) for c in KAFKA_COLUMNS], parsed.alias("e"),
        ingest_time.alias("ingest_time"), key.alias("key"), kafka_time.alias("kafka_timestamp")]]
    # Only a record with a field of the wrong type is read again, as strings: that tells "absent"
    # apart from "present but not an integer" (about 0.1 % of records; the rest are parsed once).
    stages.append(["value", "size", *KAFKA_COLUMNS, "ingest_time", "key", "kafka_timestamp",
                   F.col("e").isNull().alias("_null"),
                   F.col(f"e.{CORRUPT}").isNotNull().alias("_corrupt"),
                   *[F.col(f"e.{n}").alias(f"_s_{n}" if types[n] == "timestamp" else n) for n in names]])
    stages.append(["*", F.when(F.col("_corrupt"), F.from_json(small, "map<string,string>",
                                                              {"mode": "PERMISSIVE"})).alias("_m")])
    stages.append(["*", *[(F.col(f"_s_{n}").try_cast("timestamp")).alias(n) for n in names if types[n] == "timestamp"]])
    e = F.col

    def present(n: str) -> "Column":
        raw_text = f"_s_{n}" if types[n] == "timestamp" else n
        return F.when(F.col("_corrupt"), F.col("_m")[n].isNotNull()).otherwise(F.col(raw_text).isNotNull())

    rules: list[tuple["Column", str]] = [
        (F.col("size") > limit, "too_large"),
        (F.col("value").isNull(), "null_value"),
        (F.col("_null") | (F.col("_corrupt") & F.col("_m").isNull()), "not_json"),
    ]
    rules += [(~present(n), f"missing_field:{n}") for n in required_fields(fields)]
    for name in names:
        if types[name] == "timestamp":  # an ISO date and time, nothing else
            text = F.col(f"_s_{name}")
            wrong = text.isNotNull() & (e(name).isNull() | ~text.rlike(ISO_DATE))
        else:
            wrong = present(name) & e(name).isNull()
        rules.append((wrong, f"bad_type:{name}"))
    rules += [(~e(n).isin(*allowed), f"bad_enum:{n}") for n, allowed in settings["schema"]["enums"].items()]
    coords = ("click_coordinates_x", "click_coordinates_y")
    if {"action_type", "device_type", *coords} <= set(names):
        x, y = e(coords[0]), e(coords[1])
        outside = F.lit(False)
        for device, (width, height) in settings["validation"]["viewports"].items():
            outside = outside | ((e("device_type") == device) & ((x < 0) | (x >= width) | (y < 0) | (y >= height)))
        is_click = e("action_type") == "click"
        rules.append((is_click & outside, "out_of_viewport"))
        rules.append((~is_click & ((x != NO_COORDINATE) | (y != NO_COORDINATE)), "unexpected_coordinates"))
    if "timestamp" in names:
        skew = settings["validation"]["clock_skew_s"]
        rules.append((e("timestamp") > F.col("ingest_time") + F.expr(f"INTERVAL {skew} SECONDS"), "future_time"))
    if "timezone" in names:
        # Local hours (features, reports) convert with this zone: one unknown to the JVM would fail
        # every later Spark job on the lake, so it is quarantined here.
        rules.append((~e("timezone").isin(*zones), "bad_timezone"))
    reason = F.coalesce(*[F.when(cond, F.lit(code)) for cond, code in rules])
    stages.append(["*", reason.alias("quarantine_reason")])
    stages.append([*names, *KAFKA_COLUMNS, "ingest_time", "key", "kafka_timestamp",
                   F.when(F.col("quarantine_reason").isNotNull(), F.col("value")).alias("value"), "quarantine_reason"])
    return stages


_ZONES: tuple[str, ...] = ()


def jvm_time_zones(df: "DataFrame") -> tuple[str, ...]:
    """The region-based time zone IDs of the JVM that runs Spark (``java.time.ZoneId``), sorted."""
    global _ZONES
    if not _ZONES:
        jvm = df.sparkSession.sparkContext._jvm
        _ZONES = tuple(sorted(str(z) for z in jvm.java.time.ZoneId.getAvailableZoneIds()))
    return _ZONES


def quarantine_message(settings: Settings) -> "Column":
    """A sentence for a person, from a quarantined row's reason, raw value and parsed fields."""
    from pyspark.sql import functions as F

    names = field_names(settings.schema_fields)
    types = {f["name"]: f["type"] for f in settings.schema_fields}
    enums = settings["schema"]["enums"]
    limit = settings["ingest"]["max_record_bytes"]
    skew = settings["validation"]["clock_skew_s"]
    reason = F.col("quarantine_reason")
    kind, fld = F.substring_index(reason, ":", 1), F.substring_index(reason, ":", -1)
    raw_field = F.substring(F.coalesce(F.call_function("get_json_object", F.col("value"), F.concat(F.lit("$."), fld)),
                                       F.lit("")), 1, 80)
    literal_map = lambda d: F.create_map(*[F.lit(v) for k, w in d.items() for v in (k, w)])  # noqa: E731
    typed = lambda t: ("an " if t[0] in "aeiou" else "a ") + t  # noqa: E731
    iso = "yyyy-MM-dd'T'HH:mm:ss'Z'"
    msg = (F.when(kind == "too_large", F.format_string(
                f"value of %d bytes, more than ingest.max_record_bytes ({limit})", F.octet_length("value")))
           .when(kind == "null_value", F.lit("the record has no value (tombstone)"))
           .when(kind == "not_json", F.lit("the value is not a JSON object"))
           .when(kind == "missing_field", F.format_string("required field '%s' is missing or null", fld))
           .when(kind == "bad_type", F.format_string("field '%s' is not %s: %s", fld,
                                                     literal_map({n: typed(t) for n, t in types.items()})[fld],
                                                     raw_field))
           .when(kind == "bad_enum", F.format_string("%s %s is not one of %s", fld, raw_field,
                                                     literal_map({n: ", ".join(v) for n, v in enums.items()})[fld])))
    if {"action_type", "device_type", "click_coordinates_x", "click_coordinates_y"} <= set(names):
        sizes = literal_map({d: f"{w}x{h}" for d, (w, h) in settings["validation"]["viewports"].items()})
        x, y = F.col("click_coordinates_x"), F.col("click_coordinates_y")
        msg = (msg.when(kind == "out_of_viewport", F.format_string(
                   "click at (%d, %d) outside the %s viewport %s", x, y, "device_type", sizes[F.col("device_type")]))
               .when(kind == "unexpected_coordinates", F.format_string(
                   f"a %s event carries coordinates (%d, %d); only clicks may (others {NO_COORDINATE}, "
                   f"{NO_COORDINATE})", "action_type", x, y)))
    if "timezone" in names:
        msg = msg.when(kind == "bad_timezone", F.format_string(
            "timezone %s is not a region-based time zone ID (such as Europe/Paris)",
            F.substring(F.col("timezone"), 1, 80)))
    if "timestamp" in names:
        msg = msg.when(kind == "future_time", F.format_string(
            f"event time %s is more than {skew} s after the ingest time %s",
            F.date_format("timestamp", iso), F.date_format("ingest_time", iso)))
    return msg.otherwise(reason)


def _ts(value: datetime | str) -> "Column":
    """A timestamp literal read in the session's time zone (UTC): a Python datetime would go
    through the local time zone of this process."""
    from pyspark.sql import functions as F

    text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.replace("T", " ")
    return F.lit(text).cast("timestamp")


def split_valid(parsed: "DataFrame", settings: Settings,
                watermark: datetime | dict[str, str] | None = None) -> tuple["DataFrame", "DataFrame"]:
    """Split parsed records into (silver rows, quarantine rows).

    Args:
        parsed: The output of :func:`parse_records`.
        settings: Gives the event schema (``Settings.schema_fields``).
        watermark: Events older than this get ``is_late = true``: one time, or one per topic
            (``{topic: ISO time}``, UTC); None: none is late.

    Returns:
        Silver rows (the typed fields, topic, partition, offset, ingest_time, event_date,
        is_late) and quarantine rows (value, key, reason, message, topic, partition, offset,
        ingest_time, ingest_date).
    """
    from pyspark.sql import functions as F

    names = field_names(settings.schema_fields)
    good = parsed.where(F.col("quarantine_reason").isNull())
    late = _late(watermark)
    silver = good.select(*names, *KAFKA_COLUMNS, "ingest_time",
                         F.to_date("timestamp").alias("event_date"), late.alias("is_late"))
    quarantine = parsed.where(F.col("quarantine_reason").isNotNull()).select(
        "value", "key", F.col("quarantine_reason").alias("reason"),
        _cached(parsed, ("message", _rules_key(settings)), lambda: quarantine_message(settings)).alias("message"),
        *KAFKA_COLUMNS, "ingest_time", F.to_date("ingest_time").alias("ingest_date"))
    return silver, quarantine


def deduplicate(events: "DataFrame", existing_ids: "DataFrame | None", files_per_date: int | None = None) -> "DataFrame":
    """Silver rows without duplicate ``event_id``s: the first record of each id (lowest topic,
    partition, offset) unless the id is among ``existing_ids`` (columns ``event_date``,
    ``event_id``: a duplicate is the same event, so it has the same event date).

    With ``files_per_date``, the rows come out hash-partitioned by ``event_date`` (and a salt
    of ``event_id`` for more than one file per date): one shuffle serves the dedup, the
    anti-join and the file layout of the write.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = ["event_date", "event_id"]
    salted = bool(files_per_date and files_per_date > 1)
    if salted:
        salt = F.pmod(F.xxhash64("event_id"), F.lit(files_per_date))
        events = events.withColumn("_salt", salt).repartition("event_date", "_salt")
        keys = ["event_date", "_salt", "event_id"]
    elif files_per_date:
        # no constant salt column: the optimizer folds it into the partitioning, which then no
        # longer matches the window's keys, and Spark shuffles again (four files per date)
        events = events.repartition("event_date")
    first = Window.partitionBy(*keys).orderBy(*KAFKA_COLUMNS)
    out = events.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")
    if existing_ids is not None:
        ids = existing_ids.select("event_date", "event_id")
        if salted:
            ids = ids.withColumn("_salt", salt)
        out = out.join(ids, keys, "left_anti")
    return out.select(*[c for c in events.columns if c != "_salt"])


def bronze_frame(kafka: "DataFrame", ingest_time: datetime) -> "DataFrame":
    """Kafka source rows as bronze stores them: as received, plus the batch's ingest time."""
    from pyspark.sql import functions as F

    return kafka.select(
        "key", "value", *KAFKA_COLUMNS, F.col("timestamp").alias("kafka_timestamp"),
        # strings, read in the session's time zone (UTC): Python datetimes would go through local time
        F.lit(ingest_time.isoformat(sep=" ")).cast("timestamp").alias("ingest_time"),
        F.lit(ingest_time.date().isoformat()).cast("date").alias("ingest_date"),
    )


def gold_frame(silver: "DataFrame", window_s: int = 60) -> "DataFrame":
    """Per-window events, distinct users and sessions per device and action, from silver rows
    that are not late (behind the watermark)."""
    from pyspark.sql import functions as F

    w = F.window("timestamp", f"{window_s} seconds")
    return (silver.where(~F.col("is_late"))
            .groupBy(w.alias("w"), "device_type", "action_type")
            .agg(F.count(F.lit(1)).alias("events"), F.countDistinct("user_id").alias("users"),
                 F.countDistinct("session_id").alias("sessions"))
            .select(F.col("w.start").alias("window_start"), F.col("w.end").alias("window_end"),
                    "device_type", "action_type", "events", "users", "sessions",
                    F.to_date(F.col("w.start")).alias("event_date")))


# -- the ledger: one JSON file per completed batch ------------------------------------------
def ledger_entries(settings: Settings) -> list[dict[str, Any]]:
    """The ledger's entries, by batch id."""
    folder = ingest_ledger_dir(settings)
    if not folder.is_dir():
        return []
    entries = [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("[0-9]*.json")]
    return sorted(entries, key=lambda e: e["batch_id"])


def ledger_entry(settings: Settings, batch_id: int) -> dict[str, Any] | None:
    try:
        return json.loads((ingest_ledger_dir(settings) / f"{batch_id:010d}.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


COUNTS = ("records_read", "silver", "quarantined", "duplicates_removed")


def ledger_totals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums of the ledger's counts, and the quarantine by reason."""
    totals: dict[str, Any] = {k: sum(e[k] for e in entries) for k in COUNTS}
    reasons: dict[str, int] = {}
    for e in entries:
        for reason, n in e["quarantine_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    totals["quarantine_by_reason"] = dict(sorted(reasons.items()))
    return totals


# -- one micro-batch ------------------------------------------------------------------------
@dataclass
class BatchStats:
    batch_id: int
    records_read: int
    silver: int
    quarantined: int
    duplicates_removed: int
    quarantine_by_reason: dict[str, int]
    max_event_time: dict[str, str]
    watermark: dict[str, str]
    ingest_time: str
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step: where a batch's time goes
    # valid records by latency, Kafka append -> silver commit, in LATENCY_BUCKET_MS steps ({"1200": n})
    latency_hist: dict[str, int] = field(default_factory=dict)
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "replayed"}


def _watermark(settings: Settings, previous: dict[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(watermark per topic, latest event time per topic so far), from the ledger entry of the
    batch before. Per topic: each producer's clock is its own, so a slower producer's events
    are not late just because another producer is ahead."""
    latest = dict((previous or {}).get("max_event_time") or {})
    delay = timedelta(seconds=settings["ingest"]["watermark_delay_s"])
    marks = {t: (datetime.fromisoformat(v) - delay).isoformat(timespec="microseconds") for t, v in latest.items()}
    return marks, latest


def _late(watermark: datetime | dict[str, str] | None) -> "Column":
    """``is_late`` of a parsed row: its event time is behind its topic's watermark."""
    from pyspark.sql import functions as F

    if watermark is None:
        watermark = {}
    if isinstance(watermark, dict):
        late = F.lit(False)
        for topic, mark in sorted(watermark.items()):
            late = F.when(F.col("topic") == topic, F.col("timestamp") < _ts(mark)).otherwise(late)
    else:
        late = F.col("timestamp") < _ts(watermark)
    return F.coalesce(late, F.lit(False))


def process_batch(kafka: "DataFrame", batch_id: int, settings: Settings,
                  previous: dict[str, Any] | None, app_id: str = "website-activity") -> BatchStats:
    """Write one micro-batch into bronze, quarantine, silver and gold, then its ledger entry.

    Each table gets one Delta commit, idempotent by (``app_id``, ``batch_id``): a replay after a
    crash commits only what the first attempt did not. The records are parsed once (cached);
    bronze is written from the Kafka rows, never read back.

    Args:
        kafka: The micro-batch as the Kafka source gives it.
        batch_id: Its id.
        settings: Paths and rules.
        previous: The ledger entry of the batch before (None for the first batch).
        app_id: Delta's ``txnAppId``, created with the checkpoint (:func:`checkpoint_app_id`).

    Returns:
        The batch's counts; a replay of a batch whose ledger entry exists writes nothing and
        returns that entry.
    """
    from website_activity.adapters.lake import commit_metadata, warm_state, write_batch

    done = ledger_entry(settings, batch_id)
    if done is not None:
        return BatchStats(**done, replayed=True)
    failpoint("batch.start")  # crash tests: the batch's offsets are in the checkpoint, nothing written
    start = time.monotonic()
    spark = kafka.sparkSession
    bronze = settings.path("bronze")
    # A replay keeps the ingest time of the first attempt (in bronze's commit): the future_time
    # rule compares with it, so a record lands on the same side of the rules in both attempts.
    first = commit_metadata(bronze, app_id, batch_id)
    ingest_time = (datetime.fromisoformat(first["ingest_time"]) if first and first.get("ingest_time")
                   else datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None))
    # Kept by the bronze write's own job: the parse reads it from memory, not from Kafka again.
    raw = bronze_frame(kafka, ingest_time).persist()
    read = write_batch(raw, bronze, batch_id, "ingest_date", app_id=app_id, optimize_write=False,
                       metadata={"ingest_time": ingest_time.isoformat()})
    warm_state(spark, bronze)
    watermark, latest = _watermark(settings, previous)
    stats = BatchStats(batch_id, read, 0, 0, 0, {}, latest, watermark, ingest_time.isoformat(), 0.0)
    lap = _Lap(stats.phases, start)
    lap("bronze")
    if read:
        parsed = parse_records(raw, settings).withColumn("is_late", _late(watermark)).persist()
        try:
            _write_parsed(spark, parsed, settings, batch_id, app_id, stats, lap)
        finally:
            parsed.unpersist()
    raw.unpersist()
    failpoint("batch.committed")  # crash tests: every table committed, the ledger entry not written
    stats.seconds = round(time.monotonic() - start, 3)
    write_json(ingest_ledger_dir(settings) / f"{batch_id:010d}.json", stats.to_dict())
    return stats


def _write_parsed(spark: "SparkSession", parsed: "DataFrame", settings: Settings, batch_id: int, app_id: str,
                  stats: BatchStats, lap: "_Lap") -> None:
    """Count the parsed batch (one job, which fills its cache), then commit silver, gold and
    quarantine. Each reads only cached rows and silver as it was before the batch, none reads
    another's commit: a replay recomputes whatever is missing from the same rows.

    Silver is read once, for the gold windows the batch's valid events fall in
    (:func:`rows_in_windows`): that serves both the dedup (a duplicate is the same event, so the
    same event time) and gold (a touched window is recomputed from all its rows: silver's before
    the batch plus the batch's new ones).
    """
    from pyspark.sql import functions as F

    from website_activity.adapters.lake import warm_state, write_batch

    iso = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"  # UTC (the session's time zone), as text
    # the one job that parses (and fills the cache): every count the batch needs
    bucket = F.when(F.col("quarantine_reason").isNull(),
                    F.floor(F.unix_millis("kafka_timestamp") / LATENCY_BUCKET_MS)).alias("kt")
    counts = (parsed.groupBy("quarantine_reason", "topic", "is_late", F.to_date("timestamp").alias("d"), bucket)
              .agg(F.count(F.lit(1)).alias("n"), F.date_format(F.max("timestamp"), iso).alias("t"),
                   F.date_format(F.min("timestamp"), iso).alias("t0"))
              .collect())
    lap("parse_and_count")
    valid = [r for r in counts if r.quarantine_reason is None]
    for r in counts:
        if r.quarantine_reason:
            stats.quarantine_by_reason[r.quarantine_reason] = \
                stats.quarantine_by_reason.get(r.quarantine_reason, 0) + r.n
    latest = stats.max_event_time
    for r in valid:
        if r.t is not None and r.t > latest.get(r.topic, ""):
            latest[r.topic] = r.t
    stats.max_event_time = dict(sorted(latest.items()))
    silver_rows, quarantine = split_valid(parsed, settings, stats.watermark)
    silver, gold = settings.path("silver"), settings.path("gold")
    timed = [r for r in valid if r.t0 is not None]
    window = (gold_range(min(r.t0 for r in timed), max(r.t for r in timed), settings["ingest"]["gold_window_s"])
              if timed else None)
    # read twice (the dedup's ids, gold's columns), each time only the columns it needs: cheaper
    # than caching every column of those rows
    before = rows_in_windows(spark, silver, window) if window else None
    fresh = deduplicate(silver_rows, before, settings["ingest"]["silver_files_per_date"]).persist()

    def commit(table: Path, rows: "DataFrame", **kwargs: Any) -> int:
        n = write_batch(rows, table, batch_id, app_id=app_id, **kwargs)
        warm_state(spark, table)
        return n

    try:
        # silver first: its commit is what makes the batch's events visible (the latency)
        stats.silver = commit(silver, fresh, partition_by="event_date", optimize_write=False) if valid else 0
        stats.duplicates_removed = sum(r.n for r in valid) - stats.silver
        stats.latency_hist = latency_histogram(valid, time.time())
        lap("silver")
        if window and any(not r.is_late for r in timed):
            lo, hi = window
            rows = fresh if before is None else before.unionByName(fresh)
            commit(gold, gold_frame(rows, settings["ingest"]["gold_window_s"]).repartition("event_date"),
                   partition_by="event_date", optimize_write=False,  # one file per date already
                   replace_where=f"window_start >= TIMESTAMP'{lo}' AND window_start < TIMESTAMP'{hi}'")
        lap("gold")
        if stats.quarantine_by_reason:
            stats.quarantined = commit(settings.path("quarantine"), quarantine, partition_by="ingest_date")
        lap("quarantine")
    finally:
        fresh.unpersist()


def rows_in_windows(spark: "SparkSession", silver: Path, window: tuple[str, str]) -> "DataFrame | None":
    """Silver's rows with an event time in ``window`` (``[start, end)``, UTC text), None when
    there is no silver yet.

    The batch's gold windows cover its events' times, so these rows hold every earlier copy of
    an event of the batch (a duplicate is the same event sent again: the same event time) and
    every other row of the windows gold recomputes. Delta prunes the other dates and skips the
    files whose statistics lie outside: the cost follows the batch's time span, not the lake.
    """
    from pyspark.sql import functions as F

    from website_activity.adapters.lake import read_delta, table_version

    version = table_version(silver)
    if version is None:
        return None
    lo, hi = window
    # pinned to this version: read again after silver's commit of the batch (gold's read), the
    # rows must still be silver's before it, or gold would count the batch's events twice
    return (read_delta(spark, silver, version)
            .where(F.col("event_date").between(_ts(lo).cast("date"), _ts(hi).cast("date"))
                   & (F.col("timestamp") >= _ts(lo)) & (F.col("timestamp") < _ts(hi))))


LATENCY_BUCKET_MS = 100


def latency_histogram(counts: list[Any], committed_at: float) -> dict[str, int]:
    """Valid records by latency from their Kafka append to ``committed_at`` (epoch seconds, the
    silver commit that made them visible), in :data:`LATENCY_BUCKET_MS` steps.

    Args:
        counts: Rows with ``kt`` (the Kafka timestamp's bucket: epoch ms // the step) and ``n``.
        committed_at: When silver's commit of the batch ended.

    Returns:
        ``{str(latency in ms, rounded down to the step): records}``; a record appended in the
        middle of a bucket gets the latency of the bucket's middle.
    """
    step = LATENCY_BUCKET_MS
    hist: dict[str, int] = {}
    for r in counts:
        if r.kt is None:
            continue
        ms = max(0, int(committed_at * 1000 - (r.kt * step + step / 2)))
        key = str(ms // step * step)
        hist[key] = hist.get(key, 0) + r.n
    return dict(sorted(hist.items(), key=lambda kv: int(kv[0])))


def latency_percentiles(hists: Iterable[Mapping[str, int] | None],
                        quantiles: tuple[float, ...] = (0.50, 0.95, 0.99)) -> dict[str, float] | None:
    """Latency percentiles and max in seconds over merged :func:`latency_histogram`\\ s; None when
    they hold no record.

    A percentile is the upper edge of the bucket it falls in (never under-stated, at most a bucket
    over); ``max`` is the upper edge of the highest bucket.
    """
    merged: dict[int, int] = {}
    for hist in hists:
        for key, n in (hist or {}).items():
            merged[int(key)] = merged.get(int(key), 0) + int(n)
    total = sum(merged.values())
    if total <= 0:
        return None
    buckets = sorted(merged)
    out: dict[str, float] = {}
    for q in quantiles:
        seen = 0
        for b in buckets:
            seen += merged[b]
            if seen >= q * total:
                out[f"p{round(q * 100)}"] = (b + LATENCY_BUCKET_MS) / 1000.0
                break
    out["max"] = (buckets[-1] + LATENCY_BUCKET_MS) / 1000.0
    return out


class _Lap:
    """Records the seconds since the previous lap under a name."""

    def __init__(self, into: dict[str, float], start: float) -> None:
        self.into, self.last = into, start

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.into[name] = round(now - self.last, 3)
        self.last = now


def gold_range(first: str, last: str, window_s: int) -> tuple[str, str]:
    """The windows ``[start, end)`` that event times from ``first`` to ``last`` (ISO, UTC) fall in."""
    epoch = datetime(1970, 1, 1)
    lo = int((datetime.fromisoformat(first) - epoch).total_seconds() // window_s * window_s)
    hi = int((datetime.fromisoformat(last) - epoch).total_seconds() // window_s * window_s) + window_s
    return ((epoch + timedelta(seconds=lo)).isoformat(sep=" "), (epoch + timedelta(seconds=hi)).isoformat(sep=" "))


# -- the query -------------------------------------------------------------------------------
@dataclass
class IngestResult:
    """What one run of :func:`run_ingest` did (``summary`` is what ``ingest.json`` holds)."""

    batches: int
    input_rows: int
    silver_rows: int
    quarantined_rows: int
    seconds: float
    duplicates_removed: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def read_kafka_stream(spark: "SparkSession", settings: Settings) -> "DataFrame":
    from website_activity.adapters.spark import kafka_options

    s = settings["spark"]
    timeout_ms = str(settings["kafka"]["request_timeout_s"] * 1000)
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("subscribe", ",".join(settings.topics))
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
        .option("maxOffsetsPerTrigger", str(s["max_offsets_per_trigger"]))
        .option("kafka.request.timeout.ms", timeout_ms)
        .option("kafka.default.api.timeout.ms", timeout_ms)
        .options(**kafka_options(settings))  # kafka.security: TLS and the SCRAM login, if set
        .load()
    )


APP_ID_FILE = "delta_app_id"


def checkpoint_app_id(checkpoint: Path) -> str:
    """Delta's ``txnAppId`` for the query of ``checkpoint``: created with the checkpoint, kept in it.

    Batch ids restart at 0 with a new checkpoint, and Delta silently skips a write whose (app id,
    batch id) it has seen: an id that outlived its checkpoint would drop every new batch. Kept in
    the checkpoint folder, it is deleted with it (``make reset``) and a new checkpoint gets a new one.

    Raises:
        PipelineError: The checkpoint holds batches but no id (not made by this ingest).
    """
    path = checkpoint / APP_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    offsets = checkpoint / "offsets"
    if offsets.is_dir() and any(offsets.iterdir()):
        raise PipelineError(f"the checkpoint {checkpoint} holds batches but no {APP_ID_FILE}: it was not made by "
                            "this version of ingest; run make reset for a fresh lake")
    checkpoint.mkdir(parents=True, exist_ok=True)
    app_id = f"website-activity-ingest-{uuid.uuid4()}"
    write_text(path, app_id + "\n")
    return app_id


def _check_checkpoint(settings: Settings, checkpoint: Path) -> None:
    if ledger_entries(settings) and not (checkpoint / "offsets").is_dir():
        raise PipelineError(f"the lake holds ingested batches but the checkpoint {checkpoint} is gone: "
                            "reading the topics again would reuse batch ids; run make reset for a fresh lake")


def run_ingest(spark: "SparkSession", settings: Settings, *, stream: bool = False,
               duration_s: float | None = None, stop: threading.Event | None = None,
               trigger_s: float | None = None, drain: bool = False,
               on_batch: Callable[["BatchStats"], None] | None = None, listener: Any = None) -> IngestResult:
    """Consume the topics into the lake, then rebuild gold and write the run's summary.

    While it runs, whole-stage code generation is as ``ingest.whole_stage_codegen`` says (on by
    default; README "Performance"). The session's setting is restored afterwards.

    Args:
        spark: The session.
        settings: The merged configuration.
        stream: False: ``availableNow`` (what the topics hold, then stop). True: a
            processing-time trigger (``ingest.trigger_interval_s``) until ``stop`` is set or
            ``duration_s`` has passed; the query stops between two batches.
        duration_s: Stream for at most this long (None: until ``stop``).
        stop: Set it (e.g. from a signal handler) to stop streaming.
        trigger_s: The processing-time trigger in seconds (default ``ingest.trigger_interval_s``;
            live mode uses a short one).
        drain: With ``stream``: once stopped, consume what the topics still hold (``availableNow``)
            before the summary, e.g. the producers' last records after they stopped.
        on_batch: Called with each batch's :class:`BatchStats` once it is complete (live mode's
            terminal line and view); an error in it is logged, never fails the batch.
        listener: A ``StreamingQueryListener`` registered for the run (Spark's progress events).

    Raises:
        PipelineError: The broker cannot be reached, the streaming query fails, or the lake does
            not reconcile.
    """
    key = "spark.sql.codegen.wholeStage"
    before = spark.conf.get(key, None)
    # set before the query starts: the query runs its batches in a clone of the session
    spark.conf.set(key, str(bool(settings["ingest"]["whole_stage_codegen"])).lower())
    try:
        if listener is not None:
            spark.streams.addListener(listener)
        return _run_ingest(spark, settings, stream=stream, duration_s=duration_s, stop=stop,
                           trigger_s=trigger_s, drain=drain, on_batch=on_batch)
    finally:
        if listener is not None:
            spark.streams.removeListener(listener)
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def _run_ingest(spark: "SparkSession", settings: Settings, *, stream: bool,
                duration_s: float | None, stop: threading.Event | None, trigger_s: float | None = None,
                drain: bool = False, on_batch: Callable[["BatchStats"], None] | None = None) -> IngestResult:
    checkpoint = settings.path("checkpoints") / "ingest"
    _check_checkpoint(settings, checkpoint)
    app_id = checkpoint_app_id(checkpoint)
    entries = ledger_entries(settings)
    state: dict[str, Any] = {"previous": entries[-1] if entries else None, "batches": []}

    def batch(kafka: "DataFrame", batch_id: int) -> None:
        previous = state["previous"]
        if previous is not None and previous["batch_id"] >= batch_id:
            previous = next((e for e in reversed(ledger_entries(settings)) if e["batch_id"] < batch_id), None)
        stats = process_batch(kafka, batch_id, settings, previous, app_id)
        failpoint("batch.before_commit")  # crash tests: the batch complete, Spark's commit not written
        state["previous"] = ledger_entry(settings, batch_id)
        state["batches"].append(stats)
        rate = stats.records_read / stats.seconds if stats.seconds else 0.0
        log.info("batch %d%s: %d records in %.1fs (%.0f rows/s): %d to silver, %d quarantined, "
                 "%d duplicates removed [%s]", batch_id, " (replayed, already complete)" if stats.replayed else "",
                 stats.records_read, stats.seconds, rate, stats.silver, stats.quarantined,
                 stats.duplicates_removed, ", ".join(f"{k} {v:.1f}s" for k, v in stats.phases.items()))
        if on_batch is not None:
            try:
                on_batch(stats)
            except Exception:  # a display's failure must not fail (and replay) a committed batch
                log.warning("the batch callback failed on batch %d", batch_id, exc_info=True)

    start = time.monotonic()
    stop = stop or threading.Event()
    restarts = 0
    interval = trigger_s if trigger_s is not None else settings["ingest"]["trigger_interval_s"]
    while True:
        writer = (read_kafka_stream(spark, settings).writeStream.foreachBatch(batch)
                  .option("checkpointLocation", str(checkpoint)).queryName("ingest"))
        if stream:
            writer = writer.trigger(processingTime=f"{int(round(interval * 1000))} milliseconds")
        else:
            writer = writer.trigger(availableNow=True)
        try:
            query = writer.start()
            if stream:
                _stream_until(query, stop, None if duration_s is None else start + duration_s)
                if drain:  # then what arrived after the last batch, and stop
                    stream = False
                    continue
            else:
                query.awaitTermination()
            break
        except Exception as exc:  # py4j/pyspark wrap the JVM error: keep its first line only
            if restarts < 3 and _is_replay_metrics_bug(exc):
                # Spark 4.1's Kafka source fails while reporting progress of a batch replayed from
                # the checkpoint (one that ran but was not committed before a crash). The batch
                # itself was written and committed by then: starting the query again goes on.
                restarts += 1
                # One line on the terminal; Spark's Java trace of it stays in the stage's log.
                log.warning("the batch replayed after a crash was committed; Spark 4.1's Kafka source then "
                            "fails reporting its progress (a Spark bug, handled): restarting the query")
                continue
            raise PipelineError(stream_failure(exc, settings, len(state["batches"]))) from exc
    seconds = time.monotonic() - start
    batches: list[BatchStats] = state["batches"]
    summary = finish_run(spark, settings, batches, seconds)
    return IngestResult(len(batches), sum(b.records_read for b in batches), sum(b.silver for b in batches),
                        sum(b.quarantined for b in batches), seconds,
                        sum(b.duplicates_removed for b in batches), summary)


def _stream_until(query: Any, stop: threading.Event, deadline: float | None) -> None:
    """Wait until ``stop`` is set or the deadline passes, then stop the query between batches."""
    while not query.awaitTermination(0.5):
        if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
            # Stop between two batches, so the last one is committed; if a trigger starts just
            # then, its batch is replayed by the next run (idempotent), never lost.
            waited = time.monotonic()
            while query.status["isTriggerActive"] and time.monotonic() - waited < 600:
                if query.awaitTermination(0.2):
                    return
            query.stop()
            query.awaitTermination()
            return


def _is_replay_metrics_bug(exc: BaseException) -> bool:
    return 'because the return value of "scala.Option.get()" is null' in str(exc)


# Kafka's client errors when no broker answers within its timeouts (the broker was stopped or lost).
_BROKER_GONE = ("Timed out waiting for a node assignment", "Timed out waiting to send the call",
                "Timed out waiting for a leader", "TimeoutException: Call(callName=listOffsets")


def stream_failure(exc: BaseException, settings: Settings, batches_done: int) -> str:
    """The one line for a failed query: what happened in the user's terms when the broker stopped
    answering (Kafka's own words kept in brackets), Spark's first line otherwise."""
    text = str(exc)
    kafka = next((sign for sign in _BROKER_GONE if sign in text), None) if "TimeoutException" in text else None
    if kafka is None:
        return f"streaming ingest failed: {first_line(exc)}"
    kept = "the batch committed before is" if batches_done == 1 else f"the {batches_done} batches committed before are"
    return (f"the Kafka broker at {settings.bootstrap_servers} stopped answering while the stream ran "
            f"(Kafka: {kafka}); {kept} in the lake: start the broker and run the ingest again, it goes on "
            "from its checkpoint")


# -- end of run: gold, reconciliation, summary ------------------------------------------------
def count_late(spark: "SparkSession", settings: Settings) -> int:
    """Late events in silver (behind the watermark, left out of gold): a column scan that Delta's
    file statistics on ``is_late`` mostly skip."""
    from website_activity.adapters.lake import is_table, read_delta

    silver = settings.path("silver")
    return read_delta(spark, silver).where("is_late").count() if is_table(silver) else 0


def finish_run(spark: "SparkSession", settings: Settings, batches: list[BatchStats],
               seconds: float) -> dict[str, Any]:
    """Reconcile the ledger with the tables and write ``ingest.json`` (gold is kept up to date by
    each batch: nothing is rebuilt here).

    Raises:
        PipelineError: The equation or the tables' row counts do not match the ledger.
    """
    from website_activity.adapters.lake import settle, table_stats

    settle()
    late = count_late(spark, settings)
    entries = ledger_entries(settings)
    totals = ledger_totals(entries)
    tables = {key: table_stats(settings.path(key)) for key in ("bronze", "silver", "quarantine", "gold")}
    run_read = sum(b.records_read for b in batches)
    summary: dict[str, Any] = {
        **totals,
        "late": late,
        "gold_dropped_by_watermark": late,
        "gold_rows": tables["gold"]["rows"],
        "silver_files": tables["silver"]["files"],
        "silver_avg_file_bytes": tables["silver"]["avg_file_bytes"],
        "seconds": round(seconds, 3),
        "batches": len(batches),
        "rate": round(run_read / seconds, 1) if seconds else 0.0,
        # Kafka append -> silver commit, this run's valid records (a replay of records produced
        # before the run measures the wait too: meaningful for live runs)
        "latency_s": latency_percentiles([b.latency_hist for b in batches]),
        "run": {k: sum(getattr(b, k) for b in batches) for k in COUNTS},
        "ledger_batches": len(entries),
        "tables": tables,
        "watermark_delay_s": settings["ingest"]["watermark_delay_s"],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    problems = reconcile(summary)
    summary["reconciled"] = not problems
    write_json(ingest_summary_path(settings), summary)
    if problems:
        raise PipelineError(f"the lake does not reconcile: {'; '.join(problems)} (see {ingest_summary_path(settings)})")
    return summary


def reconcile(summary: dict[str, Any]) -> list[str]:
    """What does not add up between the ledger's counts and the tables' rows (empty: all does)."""
    problems = []
    read, silver, quarantined, dups = (summary[k] for k in COUNTS)
    if read != silver + quarantined + dups:
        problems.append(f"records_read {read} != silver {silver} + quarantined {quarantined} "
                        f"+ duplicates_removed {dups}")
    tables = summary["tables"]
    for key, table in (("records_read", "bronze"), ("silver", "silver"), ("quarantined", "quarantine")):
        if tables[table]["rows"] != summary[key]:
            problems.append(f"{table} holds {tables[table]['rows']} rows, the ledger says {key} {summary[key]}")
    return problems
