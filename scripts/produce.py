"""make produce: two producer processes, one per topic, EVENTS seeded events in total."""

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.produce import run_produce


@click.command()
@common_options
@click.option("--events", type=click.IntRange(min=0), default=None, help="Events in total (default: run.events).")
@click.option("--seed", type=int, default=None, help="Random seed (default: run.seed).")
@main_wrapper("produce")
def main(profile, port, events, seed):
    """Generate website-activity events and send them to the topics."""
    settings = settings_from(profile, port, **{"run.events": events, "run.seed": seed})
    events, seed = settings["run"]["events"], settings["run"]["seed"]
    results = run_produce(settings, events, seed)
    for r in results:
        click.echo(f"produce: {r.topic}: {r.sent} events acknowledged in {r.seconds:.1f}s ({r.rate:,.0f}/s)")
    click.echo(f"produce: {sum(r.sent for r in results)} of {events} events sent (seed {seed})")


if __name__ == "__main__":
    main()
