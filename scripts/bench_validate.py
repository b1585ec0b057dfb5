"""How long the quality gate takes on a large lake (run by hand; no test runs it).

Generates --base events with the generator, parses them as ingest does, repeats them with fresh
event ids up to --events rows, writes them as a date-partitioned silver table in a scratch
folder (with its own GX project, reports and latest.json), then times `run_validate` --runs
times on the configured Spark master (local[2] by default).

    .venv/bin/python scripts/bench_validate.py --events 1000000
"""

import json
import shutil
import tempfile
import time
from pathlib import Path

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.generator import EventGenerator
from website_activity.ingest import parse_records, split_valid
from website_activity.spark import spark_session
from website_activity.validate import run_validate


@click.command()
@common_options
@click.option("--events", type=int, default=1_000_000, show_default=True, help="Rows in the silver table.")
@click.option("--base", type=int, default=100_000, show_default=True,
              help="Events generated (the rest are copies of them with new event ids).")
@click.option("--runs", type=int, default=2, show_default=True, help="Validations to time (the first is cold).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Scratch folder for the lake and outputs (default: a temp folder, removed at the end).")
@main_wrapper("bench-validate")
def main(profile, port, events, base, runs, workdir):
    """Time the quality gate (both suites, Data Docs, CSV) on EVENTS silver rows."""
    from pyspark.sql import functions as F

    scratch = workdir or Path(tempfile.mkdtemp(prefix="bench-validate-"))
    paths = {f"paths.{key}": str(scratch / key) for key in ("silver", "quarantine", "validation", "reports", "gx")}
    settings = settings_from(profile, port, **paths)
    try:
        with spark_session(settings, "bench-validate") as spark:
            base = min(base, events)
            started = time.monotonic()
            gen = [EventGenerator.from_settings(settings, 7, s).events(n)
                   for s, n in (("producer-a", base - base // 2), ("producer-b", base // 2))]
            records = [(json.dumps(e), i % 2, i) for g in gen for i, e in enumerate(g)]
            raw = spark.createDataFrame(records, "value string, partition int, offset long") \
                .withColumn("topic", F.lit("producer-a"))
            silver, _ = split_valid(parse_records(raw, settings), settings)
            silver = silver.persist()
            copies = -(-events // base)
            table = silver
            for copy in range(1, copies):
                table = table.unionByName(silver.withColumn("event_id", F.expr("uuid()"))
                                          .withColumn("offset", F.col("offset") + copy * base))
            table.limit(events).write.mode("overwrite").partitionBy("event_date").parquet(str(scratch / "silver"))
            silver.unpersist()
            click.echo(f"bench-validate: {events} silver rows written in {time.monotonic() - started:.0f}s "
                       f"({base} generated) under {scratch}")
            for run in range(1, runs + 1):
                started = time.monotonic()
                report = run_validate(spark, settings)
                click.echo(f"bench-validate: run {run}: {report.expectations} expectations on {report.rows} rows "
                           f"in {time.monotonic() - started:.1f}s on {settings['spark']['master']} "
                           f"(suites {report.seconds:.1f}s)")
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
