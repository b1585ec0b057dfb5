"""make ingest / make stream: Structured Streaming from both topics into bronze, silver, quarantine, gold."""

import signal
import threading

import click

from website_activity.adapters.spark import spark_java, spark_session
from website_activity.adapters.topics import check_topics, topic_offsets
from website_activity.cli import common_options, echo_err, main_wrapper, settings_from
from website_activity.cli.preflight import check_writable
from website_activity.core.catalog import ingest_summary_path
from website_activity.stages.ingest import bulk_settings, records_waiting, run_ingest


@click.command()
@common_options
@click.option("--stream", is_flag=True,
              help="Keep consuming with a processing-time trigger (ingest.trigger_interval_s) until "
                   "SIGINT/SIGTERM or --duration, instead of consuming what is there and stopping.")
@click.option("--duration", type=float, default=None,
              help="With --stream: stop after this many seconds (after committing the last batch).")
@click.option("--max-offsets", type=int, default=None,
              help="Kafka records per micro-batch (overrides spark.max_offsets_per_trigger).")
@main_wrapper("ingest")
def main(profile, port, stream, duration, max_offsets):
    """Consume the topics into the lake; the checkpoint remembers where it stopped.

    Writes data/_runs/ingest.json: records read, silver rows, quarantined (by reason),
    duplicates removed, late events, file sizes; exits non-zero if they do not reconcile.
    """
    settings = settings_from(profile, port, **{"spark.max_offsets_per_trigger": max_offsets})
    # fail in seconds, not after starting Spark: the JVM and jars, the lake's folders, the broker and topics
    spark_java(settings)
    check_writable(settings, "bronze", "silver", "quarantine", "gold", "runs", "checkpoints")
    check_topics(settings)
    waiting = records_waiting(settings, topic_offsets(settings))
    bulk = bulk_settings(settings, waiting)
    if bulk is not None:  # a replay of a large backlog: the JIT of spark.bulk_driver_java_options
        click.echo(f"ingest: {waiting:,} records waiting (spark.bulk_records {settings['spark']['bulk_records']:,} "
                   "or more): the driver JVM compiles its libraries' code with C2 (bulk mode)")
        settings = bulk
    stop = threading.Event()
    if stream:
        def request_stop(signum, _frame):
            echo_err(f"ingest: {signal.Signals(signum).name} received, stopping after the current batch")
            stop.set()

    with spark_session(settings, "ingest") as spark:
        if stream:  # after the session starts: PySpark installs its own SIGINT handler
            signal.signal(signal.SIGINT, request_stop)
            signal.signal(signal.SIGTERM, request_stop)
        r = run_ingest(spark, settings, stream=stream, duration_s=duration, stop=stop)
    s = r.summary
    rate = r.input_rows / r.seconds if r.seconds else 0
    click.echo(f"ingest: {r.input_rows} records in {r.batches} batches, {r.seconds:.1f}s ({rate:,.0f}/s): "
               f"{r.silver_rows} to silver, {r.quarantined_rows} quarantined, "
               f"{r.duplicates_removed} duplicates removed")
    reasons = ", ".join(f"{k} {v}" for k, v in s["quarantine_by_reason"].items()) or "none"
    click.echo(f"ingest: lake reconciled: records_read {s['records_read']} = silver {s['silver']} "
               f"+ quarantined {s['quarantined']} + duplicates_removed {s['duplicates_removed']}; "
               f"quarantine by reason: {reasons}; late {s['late']} (not in gold)")
    click.echo(f"ingest: silver {s['silver_files']} files, {s['silver_avg_file_bytes'] / 1e6:.1f} MB on average; "
               f"gold {s['gold_rows']} rows; summary in {ingest_summary_path(settings)}")


if __name__ == "__main__":
    main()
