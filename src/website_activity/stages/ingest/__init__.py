"""Ingest: Kafka (both topics) -> bronze, silver, quarantine and gold, Delta tables of the lake.

One Structured Streaming query reads the topics (``startingOffsets=earliest`` for a new
checkpoint, ``failOnDataLoss=true``) and hands each micro-batch to :func:`process_batch`
(``foreachBatch``), which makes one Delta commit per table:

1. ``bronze``: every Kafka record as received (key, value, topic, partition, offset, Kafka
   timestamp, ingest time), partitioned by ``ingest_date``, written from the Kafka rows, in a
   thread of its own alongside 2-4 (a record's latency to silver does not wait for it).
2. The records are parsed once (:func:`parse_records`, kept for the batch as a local checkpoint)
   and one job counts them (by reason, topic, event date, lateness).

Then, each from those rows and silver as it was before the batch:

3. ``silver``: the valid events, typed (not partitioned: files by ranges of event time, sorted
   by it, ``ingest.silver_file_rows`` at most), deduplicated on
   ``event_id`` within the batch (the record with the lowest topic, partition, offset wins) and
   against silver's rows in the event-time windows the batch touches (an anti-join: a duplicate
   is the same event re-sent, so it has the same event time; :func:`rows_in_windows`), then
   appended.
4. ``quarantine``: records that fail parsing or a declared rule, with the raw value, a reason
   code (:data:`REASONS`), a human message, topic, partition, offset and ingest time.
5. ``gold``: the per-minute windows the batch touched (spans of them: a late session adds its own
   minutes, not the hours between) join those earlier batches left pending;
   every ``ingest.gold_interval_s`` of ingest time (and in the batch that creates gold, and at
   the end of every run, :func:`flush_gold`) they are recomputed from silver's committed rows in them and replaced:
   the cost follows the windows, not the lake, and is paid once per interval, not per batch.
6. A ledger entry ``<paths.runs>/ingest_batches/<N>.json`` with the batch's counts and the gold
   windows still pending.

**Exactly once.** Spark records a batch's offsets before running it and commits it to the
checkpoint only after ``foreachBatch`` returns; after a crash it replays the uncommitted batch
with the same offsets, so the same records. Every commit of batch N carries Delta's
transaction id (``txnAppId`` = an id created with the checkpoint, ``txnVersion`` = N), written
atomically with its files: Delta skips a replayed write that it already committed, and a write
that did not commit left no visible rows. A replay therefore commits exactly what the first
attempt had not, and computes it from the same inputs: each table's commit keeps the batch's ingest
time (the ``future_time`` rule uses it; a replay takes it from whichever commit went in), silver's dedup reads silver before batch N (its commit is
all or nothing; if it is in, the dedup finds nothing new and silver's write is skipped), gold's
decision to update depends only on the ledger entry of batch N-1 and that ingest time, and gold
is always recomputed from silver's committed rows (a window recomputed twice is never counted
twice); the watermark comes from the ledger entry of batch N-1. Hence
``records_read = silver + quarantined + duplicates_removed`` over the ledger, with no
``event_id`` twice in silver. A new checkpoint gets a new app id (:func:`checkpoint_app_id`):
Delta would skip, silently, batch ids it saw under the old one.

**Watermark.** The watermark of batch N, per topic, is the latest event time of that topic in
batches < N (kept in the ledger) minus ``ingest.watermark_delay_s``, as Structured Streaming
defines it (per topic: each producer's clock is its own). Silver events older than it get
``is_late = true``: they stay in silver, are left out of gold, and are counted
(``gold_dropped_by_watermark``).

The package's modules:

* :mod:`.transforms`: the Spark transforms (parse, rules, split, dedup, bronze's and gold's rows),
  pure functions of DataFrames and values (:class:`Rules`), unit-tested on inline DataFrames.
* :mod:`.accounting`: a batch's counts, the watermark, latency, the reconciliation: pure Python.
* :mod:`.run`: the I/O, the one module that reads and writes (the query, each batch's commits,
  the ledger, ``ingest.json``).
"""

from website_activity.stages.ingest.accounting import (COUNTS, LATENCY_BUCKET_MS, BatchStats, gold_due,
                                                       gold_range, latency_histogram, latency_percentiles,
                                                       ledger_totals, merge_spans, reconcile, watermarks,
                                                       window_spans)
from website_activity.stages.ingest.run import (IngestResult, bulk_settings, checkpoint_app_id, checkpoint_offsets,
                                                finish_run, flush_gold, ledger_entries, ledger_entry, process_batch,
                                                records_waiting, rows_in_windows, rules_of, run_ingest,
                                                stream_failure, warm_up)
from website_activity.stages.ingest.transforms import (REASONS, Rules, bronze_frame, deduplicate, gold_frame,
                                                       parse_records, quarantine_message, split_valid)

__all__ = ["COUNTS", "LATENCY_BUCKET_MS", "REASONS", "BatchStats", "IngestResult", "Rules", "bronze_frame",
           "bulk_settings", "checkpoint_app_id", "checkpoint_offsets", "deduplicate", "finish_run",
           "flush_gold", "gold_due", "gold_frame", "gold_range", "latency_histogram", "latency_percentiles",
           "ledger_entries", "ledger_entry", "ledger_totals", "merge_spans", "parse_records", "process_batch",
           "quarantine_message", "reconcile", "records_waiting", "rows_in_windows", "rules_of", "run_ingest",
           "split_valid", "stream_failure", "warm_up", "watermarks", "window_spans"]
