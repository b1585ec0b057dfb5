"""make all: every stage in order (the Spark ones in this process, on one session), then a summary table."""
import sys

import click

from website_activity.cli import common_options, settings_from
from website_activity.cli.summary import run_all


@click.command()
@common_options
@click.option("--force", is_flag=True, help="Train even if validation fails (make all FORCE=1).")
def main(profile, port, force):
    """Run kafka-up, reset, topics, produce, ingest, validate, train, score and report; print what each
    produced and its seconds. Stops at the first stage that fails (its last line names its log).

    The Spark stages (ingest to report) run in this process on one SparkSession; each is still
    `make <stage>` on its own.
    """
    settings = settings_from(profile, port)
    common = (["--profile", profile] if profile else []) + (["--port", str(port)] if port else [])
    sys.exit(run_all(settings, click.echo, common_args=common, force=force))


if __name__ == "__main__":
    main()
