"""make compact: OPTIMIZE then VACUUM each table of the lake (bronze, silver, quarantine, gold)."""

import click

from website_activity.adapters.lake import TABLES, compact_table, is_table
from website_activity.adapters.spark import spark_java, spark_session
from website_activity.cli import common_options, main_wrapper, settings_from


@click.command()
@common_options
@click.option("--retention-hours", type=float, default=None,
              help="VACUUM keeps the files of versions newer than this (default ingest.compact_retention_h).")
@main_wrapper("compact")
def main(profile, port, retention_hours):
    """Bin-pack each table's small files into large ones and delete the files no recent version needs.

    Safe while nothing else writes the lake; readers of a version older than the retention lose it.
    """
    settings = settings_from(profile, port)
    spark_java(settings)
    hours = settings["ingest"]["compact_retention_h"] if retention_hours is None else retention_hours
    tables = [t for t in TABLES if is_table(settings.path(t))]
    if not tables:
        click.echo("compact: no table in the lake yet (run make ingest first)")
        return
    with spark_session(settings, "compact") as spark:
        # VACUUM lists the table's folders in a Spark job of this many tasks (Spark's default:
        # 10,000, about 30 s of task overhead per table even on a small lake); the cores suffice.
        spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism",
                       str(max(spark.sparkContext.defaultParallelism, 2)))
        if hours < 168:  # Delta refuses a retention under its 7-day default unless told
            spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        for table in tables:
            r = compact_table(spark, settings.path(table), hours)
            click.echo(f"compact: {table}: {r['files_before']} -> {r['files_after']} files, {r['rows']} rows, "
                       f"version {r['version']}")


if __name__ == "__main__":
    main()
