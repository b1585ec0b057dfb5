"""make ingest: Structured Streaming from both topics into data/silver (availableNow)."""

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.ingest import run_ingest
from website_activity.spark import spark_session


@click.command()
@common_options
@main_wrapper("ingest")
def main(profile, port):
    """Consume what the topics hold, then stop; the checkpoint remembers where it stopped."""
    settings = settings_from(profile, port)
    with spark_session(settings, "ingest") as spark:
        r = run_ingest(spark, settings)
    rate = r.input_rows / r.seconds if r.seconds else 0
    click.echo(f"ingest: {r.input_rows} records in {r.batches} batches, {r.seconds:.1f}s ({rate:,.0f}/s): "
               f"{r.silver_rows} to silver, {r.quarantined_rows} quarantined")


if __name__ == "__main__":
    main()
