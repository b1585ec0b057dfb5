"""make all: every stage in order (each one its own make target), then a summary table."""
import sys

import click

from website_activity.cli import common_options, settings_from
from website_activity.summary import run_all


@click.command()
@common_options
def main(profile, port):
    """Run kafka-up, reset, topics, produce, ingest, validate, train, score and report; print what each
    produced and its seconds. Stops at the first stage that fails (its last line names its log)."""
    settings = settings_from(profile, port)
    sys.exit(run_all(settings, click.echo))


if __name__ == "__main__":
    main()
