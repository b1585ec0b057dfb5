"""Ingest's Spark transforms: pure functions of DataFrames and values, no reading or writing.

:func:`parse_records` parses Kafka records once into the event schema and names the first
quarantine rule each breaks (:data:`REASONS`); :func:`split_valid` splits them into silver's rows
and quarantine's (with a message for a person); :func:`deduplicate` drops repeated ``event_id``\\ s;
:func:`bronze_frame` and :func:`gold_frame` shape bronze's and gold's rows. What the rules check
comes in as :class:`Rules` (values, built from the settings by the I/O module,
:func:`website_activity.stages.ingest.run.rules_of`). Unit-tested on inline DataFrames.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from website_activity.core.schema import NO_COORDINATE, field_names, required_fields
from website_activity.adapters.spark import spark_schema

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

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


@dataclass(frozen=True)
class Rules:
    """What the parse and the quarantine check, as values.

    Attributes:
        fields: The event schema (``Settings.schema_fields``: name, type, required).
        enums: ``schema.enums``: the allowed values of a field.
        viewports: ``validation.viewports``: a device's ``[width, height]``.
        clock_skew_s: ``validation.clock_skew_s``: how far after the ingest time an event may be.
        max_record_bytes: ``ingest.max_record_bytes``: a larger value is not parsed.
    """

    fields: Sequence[Mapping[str, Any]]
    enums: Mapping[str, Sequence[str]]
    viewports: Mapping[str, Sequence[int]]
    clock_skew_s: float
    max_record_bytes: int

    @property
    def key(self) -> str:
        """The rules as one string (the cache key of the column expressions built from them)."""
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @property
    def names(self) -> list[str]:
        return field_names(self.fields)


def parse_records(raw: "DataFrame", rules: Rules) -> "DataFrame":
    """Parse Kafka records into the declared schema and apply the quarantine rules.

    Args:
        raw: Kafka rows with at least ``value`` (binary or string), ``topic``, ``partition``,
            ``offset``; ``ingest_time`` and ``key`` when present (else now and null).
        rules: What to check (:class:`Rules`).

    Returns:
        One row per record: the typed fields, ``topic``, ``partition``, ``offset``,
        ``ingest_time``, ``key``, ``kafka_timestamp`` (null when ``raw`` has none), the raw ``value`` as a string (null for valid events: silver
        does not need it) and ``quarantine_reason`` (null for a valid event, else a code of
        :data:`REASONS`; :func:`split_valid` adds the message).
    """
    df = raw
    key = ("parse", rules.key, tuple(raw.columns))
    for columns in _cached(raw, key, lambda: _parse_stages(rules, raw.columns, jvm_time_zones(raw))):
        df = df.select(*columns)
    return df


def _cached(df: "DataFrame", key: Any, build: Callable[[], Any]) -> Any:
    """``build()``, kept per SparkContext under ``key``: the parse's few hundred column
    expressions are built once, not for every micro-batch (each is a call into the JVM: 0.7 s
    of a 10k-record batch's driver time went into building them again)."""
    sc = df.sparkSession.sparkContext
    cache = sc.__dict__.setdefault("_website_activity_columns", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _parse_stages(rules: Rules, columns: list[str], zones: tuple[str, ...]) -> list[list["Column | str"]]:
    """The selects of :func:`parse_records`, in order, for input ``columns``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    fields = rules.fields
    names = field_names(fields)
    types = {f["name"]: f["type"] for f in fields}
    limit = rules.max_record_bytes
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
    checks = _checks(rules, zones)
    reason = F.coalesce(*[F.when(cond, F.lit(code)) for cond, code in checks])
    stages.append(["*", reason.alias("quarantine_reason")])
    stages.append([*names, *KAFKA_COLUMNS, "ingest_time", "key", "kafka_timestamp",
                   F.when(F.col("quarantine_reason").isNotNull(), F.col("value")).alias("value"), "quarantine_reason"])
    return stages


def _checks(rules: Rules, zones: tuple[str, ...]) -> list[tuple["Column", str]]:
    """The quarantine rules as (condition, reason code), in :data:`REASONS`' order, over the
    columns of the parse's fourth select (typed fields, ``_s_<f>`` texts, ``_corrupt``, ``_m``)."""
    from pyspark.sql import functions as F

    fields = rules.fields
    names = field_names(fields)
    types = {f["name"]: f["type"] for f in fields}
    limit = rules.max_record_bytes
    e = F.col

    def present(n: str) -> "Column":
        raw_text = f"_s_{n}" if types[n] == "timestamp" else n
        return F.when(F.col("_corrupt"), F.col("_m")[n].isNotNull()).otherwise(F.col(raw_text).isNotNull())

    checks: list[tuple["Column", str]] = [
        (F.col("size") > limit, "too_large"),
        (F.col("value").isNull(), "null_value"),
        (F.col("_null") | (F.col("_corrupt") & F.col("_m").isNull()), "not_json"),
    ]
    checks += [(~present(n), f"missing_field:{n}") for n in required_fields(fields)]
    for name in names:
        if types[name] == "timestamp":  # an ISO date and time, nothing else
            text = F.col(f"_s_{name}")
            wrong = text.isNotNull() & (e(name).isNull() | ~text.rlike(ISO_DATE))
        else:
            wrong = present(name) & e(name).isNull()
        checks.append((wrong, f"bad_type:{name}"))
    checks += [(~e(n).isin(*allowed), f"bad_enum:{n}") for n, allowed in rules.enums.items()]
    coords = ("click_coordinates_x", "click_coordinates_y")
    if {"action_type", "device_type", *coords} <= set(names):
        x, y = e(coords[0]), e(coords[1])
        outside = F.lit(False)
        for device, (width, height) in rules.viewports.items():
            outside = outside | ((e("device_type") == device) & ((x < 0) | (x >= width) | (y < 0) | (y >= height)))
        is_click = e("action_type") == "click"
        checks.append((is_click & outside, "out_of_viewport"))
        checks.append((~is_click & ((x != NO_COORDINATE) | (y != NO_COORDINATE)), "unexpected_coordinates"))
    if "timestamp" in names:
        skew = rules.clock_skew_s
        checks.append((e("timestamp") > F.col("ingest_time") + F.expr(f"INTERVAL {skew} SECONDS"), "future_time"))
    if "timezone" in names:
        # Local hours (features, reports) convert with this zone: one unknown to the JVM would fail
        # every later Spark job on the lake, so it is quarantined here.
        checks.append((~e("timezone").isin(*zones), "bad_timezone"))
    return checks


_ZONES: tuple[str, ...] = ()


def jvm_time_zones(df: "DataFrame") -> tuple[str, ...]:
    """The region-based time zone IDs of the JVM that runs Spark (``java.time.ZoneId``), sorted."""
    global _ZONES
    if not _ZONES:
        jvm = df.sparkSession.sparkContext._jvm
        _ZONES = tuple(sorted(str(z) for z in jvm.java.time.ZoneId.getAvailableZoneIds()))
    return _ZONES


def quarantine_message(rules: Rules) -> "Column":
    """A sentence for a person, from a quarantined row's reason, raw value and parsed fields."""
    from pyspark.sql import functions as F

    names = rules.names
    types = {f["name"]: f["type"] for f in rules.fields}
    enums = rules.enums
    limit = rules.max_record_bytes
    skew = rules.clock_skew_s
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
        sizes = literal_map({d: f"{w}x{h}" for d, (w, h) in rules.viewports.items()})
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


def ts_literal(value: datetime | str) -> "Column":
    """A timestamp literal read in the session's time zone (UTC): a Python datetime would go
    through the local time zone of this process."""
    from pyspark.sql import functions as F

    text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.replace("T", " ")
    return F.lit(text).cast("timestamp")


def split_valid(parsed: "DataFrame", rules: Rules,
                watermark: datetime | dict[str, str] | None = None) -> tuple["DataFrame", "DataFrame"]:
    """Split parsed records into (silver rows, quarantine rows).

    Args:
        parsed: The output of :func:`parse_records`.
        rules: The rules the parse applied (the event schema, the messages).
        watermark: Events older than this get ``is_late = true``: one time, or one per topic
            (``{topic: ISO time}``, UTC); None: none is late.

    Returns:
        Silver rows (the typed fields, topic, partition, offset, ingest_time, event_date,
        is_late) and quarantine rows (value, key, reason, message, topic, partition, offset,
        ingest_time, ingest_date).
    """
    from pyspark.sql import functions as F

    names = rules.names
    good = parsed.where(F.col("quarantine_reason").isNull())
    late = late_flag(watermark)
    silver = good.select(*names, *KAFKA_COLUMNS, "ingest_time",
                         F.to_date("timestamp").alias("event_date"), late.alias("is_late"))
    quarantine = parsed.where(F.col("quarantine_reason").isNotNull()).select(
        "value", "key", F.col("quarantine_reason").alias("reason"),
        _cached(parsed, ("message", rules.key), lambda: quarantine_message(rules)).alias("message"),
        *KAFKA_COLUMNS, "ingest_time", F.to_date("ingest_time").alias("ingest_date"))
    return silver, quarantine


def deduplicate(events: "DataFrame", existing_ids: "DataFrame | None", files: int = 1) -> "DataFrame":
    """Silver rows without duplicate ``event_id``s: the first record of each id (lowest topic,
    partition, offset) unless the id is among ``existing_ids`` (columns ``event_date``,
    ``event_id``: a duplicate is the same event, so it has the same event date).

    The rows come out in ``files`` partitions (one file each when written), by ranges of event
    time and sorted by it within: a file's statistics (and its Parquet row groups') cover a span
    of time, so a reader of a few minutes skips the rest of the lake.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = ["event_date", "event_id"]
    first = Window.partitionBy(*keys).orderBy(*KAFKA_COLUMNS)
    out = events.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")
    if existing_ids is not None:
        out = out.join(existing_ids.select(*keys), keys, "left_anti")
    out = out.repartition(1) if files <= 1 else out.repartitionByRange(files, "timestamp")
    return out.sortWithinPartitions("timestamp").select(*events.columns)


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
    that are not late (behind the watermark).

    The distinct counts are the sizes of the groups' sets (exact, nulls left out as by
    ``countDistinct``): a partial and a final aggregate over one shuffle, where two
    ``countDistinct``s expand every row twice and aggregate in four steps over two shuffles (a
    live gold update of 82k rows 0.80 -> 0.63 s, 1M rows 6.5 -> 6.3 s; docs/performance.md)."""
    from pyspark.sql import functions as F

    w = F.window("timestamp", f"{window_s} seconds")
    return (silver.where(~F.col("is_late"))
            .groupBy(w.alias("w"), "device_type", "action_type")
            .agg(F.count(F.lit(1)).alias("events"),  # bigint, as countDistinct was: gold's schema
                 F.size(F.collect_set("user_id")).cast("long").alias("users"),
                 F.size(F.collect_set("session_id")).cast("long").alias("sessions"))
            .select(F.col("w.start").alias("window_start"), F.col("w.end").alias("window_end"),
                    "device_type", "action_type", "events", "users", "sessions",
                    F.to_date(F.col("w.start")).alias("event_date")))


def late_flag(watermark: datetime | dict[str, str] | None) -> "Column":
    """``is_late`` of a parsed row: its event time is behind its topic's watermark."""
    from pyspark.sql import functions as F

    if watermark is None:
        watermark = {}
    if isinstance(watermark, dict):
        late = F.lit(False)
        for topic, mark in sorted(watermark.items()):
            late = F.when(F.col("topic") == topic, F.col("timestamp") < ts_literal(mark)).otherwise(late)
    else:
        late = F.col("timestamp") < ts_literal(watermark)
    return F.coalesce(late, F.lit(False))
