"""make produce: two producer processes, one per topic: EVENTS valid events (or DURATION seconds), seeded."""

import sys

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.cli.preflight import check_writable
from website_activity.stages.produce import run_produce


@click.command()
@common_options
@click.option("--events", type=click.IntRange(min=0), default=None,
              help="Valid events in total, plus the injected faults (default: run.events; with --duration: no limit).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Produce for this many seconds (timed mode).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="At most this many records per second in total (rate-limited mode).")
@click.option("--seed", type=int, default=None, help="Random seed (default: run.seed).")
@click.option("--start", default=None,
              help="Start of the simulated clock: 'now' or an ISO-8601 instant (default: generator.start_time).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: producer.progress, on a terminal).")
@main_wrapper("produce")
def main(profile, port, events, duration, rate, seed, start, progress):
    """Generate website-activity traffic and send it to the topics (one producer per topic)."""
    settings = settings_from(profile, port, **{"run.events": events, "run.seed": seed})
    seed = settings["run"]["seed"]
    if events is None and duration is None:
        events = settings["run"]["events"]
    if progress is None:
        progress = settings["producer"]["progress"] and sys.stderr.isatty()
    check_writable(settings, "runs", "ground_truth")  # before a record is sent, not after the last
    run = run_produce(settings, events, seed, duration=duration, rate=rate, start=start, progress=progress)
    m = run.manifest
    for r in run:
        click.echo(f"produce: {r.topic}: {r.sent:,} of {r.records:,} records acknowledged "
                   f"({r.events:,} events) in {r.seconds:.1f}s ({r.rate:,.0f}/s)")
    faults = ", ".join(f"{k} {v:,}" for k, v in m["faults"].items() if v) or "none"
    click.echo(f"produce: delivered {m['sent']:,} of {m['records']:,} records, {m['failed']:,} failed: "
               f"{m['events']:,} events + faults ({faults}); seed {seed}, {m['rate']:,.0f} records/s overall")


if __name__ == "__main__":
    main()
