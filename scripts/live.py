"""make live: the producers (wall-clock traffic at RATE), the streaming ingest and the live view, until Ctrl-C."""

import signal
import threading

import click

from website_activity.adapters.spark import spark_java, spark_session
from website_activity.adapters.topics import check_topics
from website_activity.cli import common_options, echo_err, main_wrapper, settings_from
from website_activity.cli.live import DEFAULT_RATE, TRIGGER_S, VIEW_PORT, run_live, summary_lines
from website_activity.cli.preflight import check_writable


@click.command()
@common_options
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_RATE, show_default=True,
              help="Records per second of both producers together: how many sessions are on the site at once.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Produce for this many seconds, then drain and stop (default: until Ctrl-C).")
@click.option("--seed", type=int, default=None, help="Random seed (default: run.seed).")
@click.option("--trigger", type=click.FloatRange(min=0.1), default=TRIGGER_S, show_default=True,
              help="Seconds between micro-batches.")
@click.option("--view-port", type=click.IntRange(min=0, max=65535), default=VIEW_PORT, show_default=True,
              help="Port of the live view on 127.0.0.1 (0: any free port).")
@click.option("--view/--no-view", default=True, help="Serve the live view.")
@click.option("--warm-up/--no-warm-up", default=True, show_default=True,
              help="Run one batch of generated records into a scratch lake before the producers start.")
@main_wrapper("live")
def main(profile, port, rate, duration, seed, trigger, view_port, view, warm_up):
    """Run the pipeline as a real-time stream: events stamped with the wall clock, a batch every
    TRIGGER seconds, one line per batch; Ctrl-C stops all of it and prints what was sent and landed."""
    settings = settings_from(profile, port)
    spark_java(settings)  # fail in seconds, before Spark starts
    check_writable(settings, "bronze", "silver", "quarantine", "gold", "runs", "checkpoints", "ground_truth")
    check_topics(settings)
    stop = threading.Event()

    def request_stop(signum, _frame):
        if stop.is_set():
            return
        echo_err(f"live: {signal.Signals(signum).name} received: stopping the producers, then the last batches")
        stop.set()

    with spark_session(settings, "live") as spark:
        signal.signal(signal.SIGINT, request_stop)  # after the session starts: PySpark installs its own
        signal.signal(signal.SIGTERM, request_stop)
        r = run_live(spark, settings, rate=rate, duration_s=duration, seed=seed, trigger_s=trigger,
                     view_port=view_port if view else None, stop=stop, echo=click.echo, warm_up=warm_up)
    for line in summary_lines(r):
        click.echo(line)


if __name__ == "__main__":
    main()
