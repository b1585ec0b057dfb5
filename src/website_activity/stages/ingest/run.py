"""Ingest's I/O: the streaming query, each micro-batch's Delta commits, the ledger and the run's
summary (the package's docstring gives the data flow and the exactly-once argument).

The pure parts are :mod:`.transforms` (Spark) and :mod:`.accounting` (counts); this module reads
the settings, the topics and the tables, and writes the tables, the ledger and ``ingest.json``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from website_activity.core.catalog import ingest_checkpoint_dir, ingest_ledger_dir, ingest_summary_path
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.core.manifests import IngestSummary
from website_activity.adapters.failpoints import failpoint
from website_activity.adapters.files import write_json, write_manifest, write_text
from website_activity.stages.ingest.accounting import (COUNTS, LATENCY_BUCKET_MS, BatchStats, Lap, gold_due,
                                                       latency_histogram, latency_percentiles,
                                                       ledger_totals, merge_spans, reconcile, watermarks,
                                                       window_spans)
from website_activity.stages.ingest.transforms import (Rules, bronze_frame, deduplicate, gold_frame, late_flag,
                                                       parse_records, split_valid, ts_literal)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

log = logging.getLogger(__name__)

STATS_COLUMNS = {
    "bronze": ("topic", "partition", "offset", "kafka_timestamp", "ingest_time"),
    "silver": ("timestamp", "event_date", "topic", "partition", "offset", "ingest_time"),  # no boolean: Delta refuses it
    "quarantine": ("reason", "topic", "partition", "offset", "ingest_time"),
}
"""The columns each table keeps Delta's file statistics of (min, max, nulls: what readers skip
files by), set when ingest creates the table. Not the raw value, the message or the event's text
fields: their statistics cost more than the rest of the write (300k bronze rows: 8.8 s with them,
5.7 s without, 4.6 s with none) and skip nothing a query asks. Gold keeps all its columns."""


def rules_of(settings: Settings) -> Rules:
    """The parse's and the quarantine's rules, as values, from the settings."""
    return Rules(fields=settings.schema_fields, enums=settings["schema"]["enums"],
                 viewports=settings["validation"]["viewports"],
                 clock_skew_s=settings["validation"]["clock_skew_s"],
                 max_record_bytes=settings["ingest"]["max_record_bytes"])


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


# -- one micro-batch ------------------------------------------------------------------------
def process_batch(kafka: "DataFrame", batch_id: int, settings: Settings,
                  previous: dict[str, Any] | None, app_id: str = "website-activity") -> BatchStats:
    """Write one micro-batch into bronze, silver, gold and quarantine, then its ledger entry.

    Each table gets one Delta commit, idempotent by (``app_id``, ``batch_id``): a replay after a
    crash commits only what the first attempt did not. The records are parsed once (kept by
    :func:`keep_rows`); bronze is written from the Kafka rows, never read back.

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
    done = ledger_entry(settings, batch_id)
    if done is not None:
        return BatchStats(**done, replayed=True)
    failpoint("batch.start")  # crash tests: the batch's offsets are in the checkpoint, nothing written
    start = time.monotonic()
    batch = _Batch(kafka.sparkSession, settings, batch_id, app_id)
    ingest_time = batch.ingest_time()
    # Kept by the first job that reads it (bronze's write or the parse's count, whichever
    # computes a partition first; the other waits for it): Kafka is read once.
    raw = bronze_frame(kafka, ingest_time).persist()
    watermark, latest = watermarks(previous, settings["ingest"]["watermark_delay_s"])
    stats = BatchStats(batch_id, 0, 0, 0, 0, {}, latest, watermark, ingest_time.isoformat(), 0.0)
    lap = Lap(stats.phases, start)
    # bronze's commit runs alongside the parse and silver's commit (its tasks fill the cores
    # that silver's one task per date and the commits' driver work leave idle), so a record's
    # latency does not include it; each table's commit is idempotent on its own, and each keeps
    # the ingest time a replay reuses. Leaving the pool waits for its commits, failed or not.
    parsed = None
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-commit") as side:
            bronze = side.submit(batch.commit, "bronze", raw, partition_by="ingest_date", optimize_write=False)
            parsed = keep_rows(parse_records(raw, batch.rules).withColumn("is_late", late_flag(watermark)))
            touched, quarantine = batch.write_parsed(parsed, stats, lap, side)
            batch.update_gold(stats, touched, previous)
            lap("gold")
            stats.records_read = bronze.result()
            lap("bronze")  # what was left of bronze's commit to wait for
            stats.quarantined = quarantine.result() if quarantine is not None else 0
            lap("quarantine")
    finally:
        if parsed is not None:
            release_rows(parsed)
        raw.unpersist()
    failpoint("batch.committed")  # crash tests: every table committed, the ledger entry not written
    stats.seconds = round(time.monotonic() - start, 3)
    write_json(ingest_ledger_dir(settings) / f"{batch_id:010d}.json", stats.to_dict())
    return stats


def keep_rows(df: "DataFrame") -> "DataFrame":
    """``df``'s rows, kept by the first job that computes them (the count), as a DataFrame whose
    plan is those rows: a local checkpoint, not a cache.

    Every DataFrame built on the parsed rows (the split, the dedup, the writes: about ten a
    batch) is analysed and optimised by Spark's driver, and a cached DataFrame keeps its whole
    plan, the parse's hundreds of expressions (the time-zone rule alone about 600 literals), for
    each of them to go through. A local checkpoint's plan is a scan of its rows. Warm 10k-record
    batches, interleaved with ``persist`` in one session: median 3.76 -> 3.17 s and 3.50 -> 3.25 s
    (docs/performance.md). The rows are kept serialized, in memory and on disk where memory runs
    short (:func:`release_rows` frees them).
    """
    from pyspark import StorageLevel

    return df.localCheckpoint(eager=False, storageLevel=StorageLevel.MEMORY_AND_DISK)


def release_rows(df: "DataFrame") -> None:
    """Free the rows :func:`keep_rows` kept (``unpersist`` does not reach a checkpoint's RDD)."""
    try:
        df._jdf.logicalPlan().rdd().unpersist(False)
    except Exception as exc:  # noqa: BLE001 - memory only: Spark evicts unused blocks when it needs room
        log.debug("could not release the batch's rows: %s", first_line(exc))


class _Batch:
    """One micro-batch's writes: each table's one commit, idempotent by (app id, batch id)."""

    def __init__(self, spark: "SparkSession", settings: Settings, batch_id: int, app_id: str) -> None:
        self.spark, self.settings, self.batch_id, self.app_id = spark, settings, batch_id, app_id
        self.rules = rules_of(settings)
        self.first_ingest_time: datetime | None = None

    def ingest_time(self) -> datetime:
        """Now, or the ingest time of the first attempt at this batch (kept in each table's
        commit of it: its tables commit side by side, so any of them may be the one that went
        in before a crash): the future_time rule compares with it, so a replayed record lands on
        the same side of the rules."""
        from website_activity.adapters.lake import commit_metadata

        if self.first_ingest_time is None:
            for table in ("bronze", "silver", "quarantine"):
                first = commit_metadata(self.settings.path(table), self.app_id, self.batch_id)
                if first and first.get("ingest_time"):
                    self.first_ingest_time = datetime.fromisoformat(first["ingest_time"])
                    break
            else:
                self.first_ingest_time = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
        return self.first_ingest_time

    def commit(self, table: str, rows: "DataFrame", **kwargs: Any) -> int:
        """Append (or replace, ``replace_where``) ``rows`` in ``table``; the rows written (0 when
        Delta skipped it: committed before). The commit keeps the batch's ingest time. Then the
        table's state is computed ahead for the next batch's write
        (:func:`website_activity.adapters.lake.warm_state`)."""
        from website_activity.adapters.lake import warm_state, write_batch

        path = self.settings.path(table)
        metadata = {"ingest_time": self.first_ingest_time.isoformat()} if self.first_ingest_time else None
        n = write_batch(rows, path, self.batch_id, app_id=self.app_id, stats_columns=STATS_COLUMNS.get(table),
                        metadata=metadata, **kwargs)
        warm_state(self.spark, path)
        return n

    def write_parsed(self, parsed: "DataFrame", stats: BatchStats, lap: Lap,
                     side: ThreadPoolExecutor) -> tuple[list[list[str]], "Future[int] | None"]:
        """Count the parsed batch (one job, which fills :func:`keep_rows`' checkpoint), then commit
        silver, and quarantine alongside it (in ``side``), each from those rows and silver as it
        was before the batch: a replay recomputes whatever is missing from the same rows. Returns the spans
        of gold windows the batch's events in time (not late) touched, for :meth:`update_gold`,
        and quarantine's commit (None: nothing to quarantine).

        Silver is read for the windows the batch's valid events fall in (:func:`rows_in_windows`):
        a duplicate is the same event re-sent, so it has the same event time.
        """
        counts = count_parsed(parsed)
        lap("parse_and_count")
        valid = [r for r in counts if r.quarantine_reason is None]
        _tally(stats, counts)
        silver_rows, quarantine = split_valid(parsed, self.rules, stats.watermark)
        quarantined = (side.submit(self.commit, "quarantine", quarantine, partition_by="ingest_date")
                       if stats.quarantine_by_reason else None)
        timed = [r for r in valid if r.t0 is not None]
        window_s = self.settings["ingest"]["gold_window_s"]
        windows = window_spans(((r.t0, r.t) for r in timed), window_s)
        before = rows_in_windows(self.spark, self.settings.path("silver"), windows) if windows else None
        n_valid = sum(r.n for r in valid)
        fresh = deduplicate(silver_rows, before, -(-n_valid // self.settings["ingest"]["silver_file_rows"]))
        # its commit is what makes the batch's events visible (the latency); not partitioned (a
        # lake's few event dates are not worth a folder each: a 1M-event run was 9 files of 7 MB)
        stats.silver = self.commit("silver", fresh, optimize_write=False) if valid else 0
        stats.duplicates_removed = n_valid - stats.silver
        stats.latency_hist = latency_histogram(valid, time.time())
        lap("silver")
        return window_spans(((r.t0, r.t) for r in timed if not r.is_late), window_s), quarantined  # late: not in gold

    def update_gold(self, stats: BatchStats, touched: list[list[str]] | None,
                    previous: dict[str, Any] | None) -> None:
        """Gold's windows: those this batch touched join the ones earlier batches left pending;
        once the oldest of those batches is ``ingest.gold_interval_s`` old (ingest time, which a
        replay keeps), or while there is no gold table yet (a live view shows gold from the
        first batch on), they are recomputed in one commit and none is left pending.

        Whatever a batch decides, the lake stays right: gold is always recomputed from silver's
        committed rows, and a window leaves the ledger's pending list only in the entry of a
        batch whose gold commit covered it. A window recomputed twice (a crash between gold's
        commit and the ledger entry, whose replay then decides otherwise) is only recomputed,
        never counted twice.
        """
        from website_activity.adapters.lake import is_table

        prev = previous or {}
        pending = merge_spans(prev.get("gold_pending"), touched)
        since = prev.get("gold_since") or (stats.ingest_time if pending else None)
        due = gold_due(since, stats.ingest_time, self.settings["ingest"]["gold_interval_s"])
        if pending and (due or not is_table(self.settings.path("gold"))):
            self.recompute_gold(pending)
            pending, since = [], None
        stats.gold_pending, stats.gold_since = pending, since

    def recompute_gold(self, windows: list[list[str]]) -> None:
        """Replace gold's windows in ``windows`` (spans ``[start, end)``) by their aggregates
        over silver's rows in them: the cost follows the windows, not the lake."""
        rows = rows_in_windows(self.spark, self.settings.path("silver"), windows)
        if rows is None:
            return
        replace = " OR ".join(f"(window_start >= TIMESTAMP'{lo}' AND window_start < TIMESTAMP'{hi}')"
                              for lo, hi in windows)
        self.commit("gold", gold_frame(rows, self.settings["ingest"]["gold_window_s"]).repartition("event_date"),
                    partition_by="event_date", optimize_write=False,  # one file per date already
                    replace_where=replace)


def count_parsed(parsed: "DataFrame") -> list["Row"]:
    """The one job that parses (and fills the checkpoint of the parsed rows): every count the
    batch needs, grouped by reason, topic, lateness, event date and Kafka-time bucket (``n``;
    event times ``t0``..``t``)."""
    from pyspark.sql import functions as F

    iso = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"  # UTC (the session's time zone), as text
    bucket = F.when(F.col("quarantine_reason").isNull(),
                    F.floor(F.unix_millis("kafka_timestamp") / LATENCY_BUCKET_MS)).alias("kt")
    return (parsed.groupBy("quarantine_reason", "topic", "is_late", F.to_date("timestamp").alias("d"), bucket)
            .agg(F.count(F.lit(1)).alias("n"), F.date_format(F.max("timestamp"), iso).alias("t"),
                 F.date_format(F.min("timestamp"), iso).alias("t0"))
            .collect())


def _tally(stats: BatchStats, counts: list["Row"]) -> None:
    """The quarantine by reason and the latest event time per topic, into ``stats``."""
    for r in counts:
        if r.quarantine_reason:
            stats.quarantine_by_reason[r.quarantine_reason] = \
                stats.quarantine_by_reason.get(r.quarantine_reason, 0) + r.n
    latest = stats.max_event_time
    for r in counts:
        if r.quarantine_reason is None and r.t is not None and r.t > latest.get(r.topic, ""):
            latest[r.topic] = r.t
    stats.max_event_time = dict(sorted(latest.items()))


def warm_up(spark: "SparkSession", settings: Settings, records: int = 2000, seed: int = 0) -> BatchStats:
    """Run one batch of generated records through :func:`process_batch` into a scratch lake (a
    temporary folder, deleted after); its counts (``seconds``: what it took, generating included).

    Live mode runs it before its producers start: the first batch of a cold session compiles the
    query's code and loads Delta's (23 s for 7,557 records in a bench's live run, against 6-7 s
    warm for 10k), and the traffic that queued meanwhile delayed the minute after it. The real
    lake, its checkpoint and ledger are not touched.
    """
    import dataclasses
    import tempfile

    from website_activity.adapters.lake import settle

    start = time.monotonic()
    kafka = generated_batch(spark, settings, records, seed)
    with tempfile.TemporaryDirectory(prefix="wa-warm-up-") as tmp:
        paths = {**settings["paths"], **{key: str(Path(tmp) / key) for key in
                                         ("bronze", "silver", "quarantine", "gold", "runs", "checkpoints")}}
        # a new lake: its one batch creates gold, so gold's code is part of what the warm-up compiles
        scratch = dataclasses.replace(settings, data={**settings.data, "paths": paths})
        stats = process_batch(kafka, 0, scratch, None, app_id=f"warm-up-{uuid.uuid4()}")
        settle()  # the background state computations read the scratch tables: done before they go
    stats.seconds = round(time.monotonic() - start, 3)
    return stats


def generated_batch(spark: "SparkSession", settings: Settings, records: int, seed: int = 0) -> "DataFrame":
    """A micro-batch as the Kafka source gives it, of about ``records`` generated records (about
    10 s of live traffic per topic, ending now) and one record per topic that is not JSON."""
    from pyspark.sql.types import (BinaryType, IntegerType, LongType, StringType, StructField, StructType,
                                   TimestampType)

    from website_activity.simulate.generator import EventGenerator

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = []
    for topic in settings.topics:
        gen = EventGenerator.from_settings(settings, seed, topic, start=now - timedelta(seconds=30),
                                           live_rate=records / 10)  # about 10 s of traffic
        for offset, (key, value) in enumerate(gen.records(records // len(settings.topics))):
            rows.append((key, value, topic, 0, offset, now, 0))
        # the generator's faults are random draws (a few hundred events may hold none): one record
        # that is not JSON per topic, so the quarantine's path is always part of the batch
        rows.append((None, b"warm-up: not JSON", topic, 0, len(rows), now, 0))
    schema = StructType([StructField("key", BinaryType()), StructField("value", BinaryType()),
                         StructField("topic", StringType()), StructField("partition", IntegerType()),
                         StructField("offset", LongType()), StructField("timestamp", TimestampType()),
                         StructField("timestampType", IntegerType())])
    return spark.createDataFrame(rows, schema)


def flush_gold(spark: "SparkSession", settings: Settings, last: dict[str, Any] | None, app_id: str) -> None:
    """At the end of a run, recompute the gold windows the last batches left pending (``last``:
    the ledger entry of the last batch), then clear them from that entry: every run ends with
    gold up to date. Gold's commit carries the last batch's id, so if that batch's own gold
    commit went in before a crash, Delta skips this one (the same windows, from the same rows)."""
    if not last or not last.get("gold_pending"):
        return
    _Batch(spark, settings, last["batch_id"], app_id).recompute_gold(last["gold_pending"])
    write_json(ingest_ledger_dir(settings) / f"{last['batch_id']:010d}.json",
               {**last, "gold_pending": [], "gold_since": None})


def rows_in_windows(spark: "SparkSession", silver: Path, windows: list[list[str]]) -> "DataFrame | None":
    """Silver's rows with an event time in one of ``windows`` (spans ``[start, end)``, UTC text),
    at silver's current version; None when there is no silver yet.

    The batch's windows cover its events' times, so these rows hold every earlier copy of an
    event of the batch (a duplicate is the same event sent again: the same event time); gold's
    pending windows, read after silver's commit, hold every row gold recomputes. Delta skips
    the files whose statistics (event date, event time) lie outside, and Parquet the row groups
    of a large file: the cost follows the batch's time spans (a late session adds its own
    minutes, not the hours between), not the lake.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    from website_activity.adapters.lake import read_delta, table_version

    version = table_version(silver)
    if version is None:
        return None
    dates = [F.col("event_date").between(ts_literal(lo).cast("date"), ts_literal(hi).cast("date"))
             for lo, hi in windows]
    times = [(F.col("timestamp") >= ts_literal(lo)) & (F.col("timestamp") < ts_literal(hi)) for lo, hi in windows]
    either = lambda a, b: a | b  # noqa: E731
    # the dates alone as a conjunct of their own: a partition filter Delta prunes by in a lake
    # made when silver was partitioned by event date (a disjunction that mixes them with the
    # event time is a data filter). Pinned to the version read now: the dedup's rows stay
    # silver's before the batch's commit.
    return (read_delta(spark, silver, version)
            .where(reduce(either, dates) & reduce(either, [d & t for d, t in zip(dates, times)])))


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


def checkpoint_offsets(checkpoint: Path) -> dict[str, dict[int, int]] | None:
    """Where the query's last committed batch ended in each topic partition, from Spark's
    checkpoint (``offsets/<id>`` of the newest id in ``commits/``); None: no batch committed."""
    try:
        committed = [int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit()]
        lines = (checkpoint / "offsets" / str(max(committed))).read_text(encoding="utf-8").splitlines()
        sources = json.loads(lines[-1])  # v1, the batch's metadata, then the Kafka source's offsets
    except (OSError, ValueError, IndexError):  # no checkpoint, no commit yet (max of nothing), not Spark's file
        return None
    return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in sources.items()}


def records_waiting(settings: Settings, topics: dict[str, dict[int, tuple[int, int]]]) -> int:
    """Records in ``topics`` (``{topic: {partition: (first, end offset)}}``, as
    :func:`website_activity.adapters.topics.topic_offsets` gives) that the ingest's checkpoint
    has not read yet: all of them when there is no checkpoint."""
    done = checkpoint_offsets(ingest_checkpoint_dir(settings)) or {}
    return sum(max(0, end - max(first, done.get(topic, {}).get(p, first)))
               for topic, parts in topics.items() for p, (first, end) in parts.items())


def bulk_settings(settings: Settings, waiting: int) -> Settings | None:
    """The settings for a run with ``waiting`` records to ingest when that is a bulk replay
    (``spark.bulk_records`` or more): the driver JVM with ``spark.bulk_driver_java_options``;
    None otherwise (or when ``spark.bulk_records`` is 0)."""
    import dataclasses

    s = settings["spark"]
    if not s["bulk_records"] or waiting < s["bulk_records"] or not s["bulk_driver_java_options"]:
        return None
    data = {**settings.data, "spark": {**s, "driver_java_options": s["bulk_driver_java_options"]}}
    return dataclasses.replace(settings, data=data)


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
    checkpoint = ingest_checkpoint_dir(settings)
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
    flush_gold(spark, settings, state["previous"], app_id)
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
    """Late events in silver (behind the watermark, left out of gold): a scan of one column."""
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
    write_manifest(ingest_summary_path(settings), IngestSummary.from_dict(summary))
    if problems:
        raise PipelineError(f"the lake does not reconcile: {'; '.join(problems)} (see {ingest_summary_path(settings)})")
    return summary
