"""make topics: create the configured Kafka topics (idempotent); --delete removes them."""

import click

from website_activity.adapters.topics import create_topics, delete_topics
from website_activity.cli import common_options, main_wrapper, settings_from


@click.command()
@common_options
@click.option("--delete", is_flag=True, help="Delete the topics (and wait until they are gone) instead.")
@main_wrapper("topics")
def main(profile, port, delete):
    """Create the topics of conf/ (topics.names) if they do not exist."""
    settings = settings_from(profile, port)
    if delete:
        gone = delete_topics(settings)
        click.echo(f"topics: deleted {', '.join(gone) if gone else 'nothing (none existed)'}")
        return
    for name, state in create_topics(settings).items():
        click.echo(f"topics: {name} {state} ({settings['topics']['partitions']} partitions)")


if __name__ == "__main__":
    main()
