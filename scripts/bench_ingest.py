"""How fast ingest is, beside a plain Spark batch copy of the same topics (run by hand; no test runs it).

Starts its own Kafka broker (free ports, scratch folder), fills two topics with --events records:
--base events from the generator, repeated by Spark with fresh event ids (so the topics fill in
seconds, not minutes), then, --runs times, on the configured Spark master (local[2]):

* ingest: ``run_ingest`` (availableNow) on a fresh lake: Kafka -> bronze + quarantine + silver
  (typed, deduplicated), timed from the query's start to its end (gold and the summary after it
  are timed apart);
* baseline: ``spark.read.format("kafka")`` of the same topics -> Parquet, the Kafka columns as they
  are (no parsing).

Writes reports/bench_ingest.json.

    .venv/bin/python scripts/bench_ingest.py --events 1000000
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import click

from website_activity.broker import EmbeddedBroker, free_port
from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.generator import EventGenerator
from website_activity.ingest import run_ingest
from website_activity.produce import encode
from website_activity.spark import spark_session
from website_activity.topics import create_topics


def fill_topics(spark, settings, events: int, base: int) -> int:
    """Write ``events`` records into the topics: generated events, copied with new event ids."""
    from pyspark.sql import functions as F

    base = min(base, events)
    rows = []
    topics = settings.topics
    for i, topic in enumerate(topics):
        n = base // len(topics) + (1 if i < base % len(topics) else 0)
        rows += [(topic, e["session_id"], encode(e).decode(), e["event_id"])
                 for e in EventGenerator.from_settings(settings, 7, topic).events(n)]
    df = spark.createDataFrame(rows, "topic string, key string, value string, event_id string")
    copies = -(-events // base)
    copied = df.crossJoin(spark.range(copies).withColumnRenamed("id", "copy")).select(
        "topic", "key",
        F.when(F.col("copy") == 0, F.col("value"))
        .otherwise(F.expr("replace(value, event_id, uuid())")).alias("value"),
    ).limit(events)
    (copied.write.format("kafka").option("kafka.bootstrap.servers", settings.bootstrap_servers)
     .option("kafka.linger.ms", "50").option("kafka.batch.size", "1048576").save())
    return events


def baseline(spark, settings, out: Path) -> float:
    """Seconds for a plain batch read of the topics written to Parquet."""
    started = time.monotonic()
    (spark.read.format("kafka").option("kafka.bootstrap.servers", settings.bootstrap_servers)
     .option("subscribe", ",".join(settings.topics)).option("startingOffsets", "earliest")
     .option("endingOffsets", "latest").load()
     .select("key", "value", "topic", "partition", "offset", "timestamp")
     .write.mode("overwrite").parquet(str(out)))
    return time.monotonic() - started


@click.command()
@common_options
@click.option("--events", type=int, default=1_000_000, show_default=True, help="Records in the topics.")
@click.option("--base", type=int, default=100_000, show_default=True,
              help="Events generated (the rest are copies of them with new event ids).")
@click.option("--runs", type=int, default=2, show_default=True, help="Ingest and baseline runs (the first is cold).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Scratch folder for the broker and the lakes (default: a temp folder, removed at the end).")
@main_wrapper("bench-ingest")
def main(profile, port, events, base, runs, workdir):
    """Time ingest (Kafka -> bronze + silver) against a plain Kafka -> Parquet batch copy."""
    scratch = workdir or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    settings = settings_from(profile, port)
    broker = EmbeddedBroker(home=scratch / "kafka", jvm_dir=settings.path("jvm") / "broker",
                            port=free_port(), controller_port=free_port(), heap="1g")
    out_json = settings.path("reports") / "bench_ingest.json"
    try:
        broker.start()
        settings = settings_from(profile, broker.port, **{"kafka.controller_port": broker.controller_port})
        create_topics(settings)
        results = []
        with spark_session(settings, "bench-ingest") as spark:
            started = time.monotonic()
            fill_topics(spark, settings, events, base)
            click.echo(f"bench-ingest: {events} records in {len(settings.topics)} topics in "
                       f"{time.monotonic() - started:.0f}s")
            for run in range(1, runs + 1):
                lake = scratch / f"lake-{run}"
                paths = {f"paths.{k}": str(lake / k) for k in
                         ("bronze", "silver", "quarantine", "gold", "runs", "checkpoints")}
                s = settings_from(profile, broker.port, **{"kafka.controller_port": broker.controller_port}, **paths)
                base_s = baseline(spark, settings, lake / "baseline")
                r = run_ingest(spark, s)
                total = r.seconds
                row = {
                    "run": run, "records": r.input_rows, "batches": r.batches,
                    "ingest_s": round(total, 2), "ingest_rate": round(r.input_rows / total),
                    "baseline_s": round(base_s, 2), "baseline_rate": round(events / base_s),
                    "ratio": round((r.input_rows / total) / (events / base_s), 3),
                    "silver_files": r.summary["silver_files"],
                    "silver_avg_file_bytes": r.summary["silver_avg_file_bytes"],
                    "bronze_files": r.summary["tables"]["bronze"]["files"],
                    "bronze_avg_file_bytes": r.summary["tables"]["bronze"]["avg_file_bytes"],
                    "reconciled": r.summary["reconciled"],
                }
                results.append(row)
                click.echo(f"bench-ingest: run {run}: ingest {row['ingest_rate']:,} records/s ({total:.1f}s, "
                           f"{r.batches} batches), baseline {row['baseline_rate']:,}/s ({base_s:.1f}s), "
                           f"ratio {row['ratio']}; silver {row['silver_files']} files of "
                           f"{row['silver_avg_file_bytes'] / 1e6:.1f} MB on average")
                shutil.rmtree(lake, ignore_errors=True)
        doc = {"events": events, "base": base, "master": settings["spark"]["master"],
               "max_offsets_per_trigger": settings["spark"]["max_offsets_per_trigger"],
               "cpus": os.cpu_count(), "runs": results,
               "best": {"ingest_rate": max(r["ingest_rate"] for r in results),
                        "baseline_rate": max(r["baseline_rate"] for r in results)}}
        doc["best"]["ratio"] = round(doc["best"]["ingest_rate"] / doc["best"]["baseline_rate"], 3)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(doc, indent=2) + "\n")
        click.echo(f"bench-ingest: {out_json}")
    finally:
        broker.stop()
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
