"""make cluster-up / cluster-down / cluster-status: the local cluster harness (3 Kafka brokers in
KRaft mode, a Spark standalone master and its workers), for PROFILE=cluster."""

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.core.errors import PipelineError
from website_activity.devtools.cluster import KafkaCluster, SparkStandalone


@click.command()
@common_options
@click.argument("action", type=click.Choice(["up", "down", "status"]))
@main_wrapper("cluster")
def main(profile, port, action):
    """Start (up), stop (down) or check (status) the local Kafka and Spark clusters."""
    settings = settings_from(profile, port)
    kafka, spark = KafkaCluster.from_settings(settings), SparkStandalone.from_settings(settings)
    if action == "up":
        try:
            pids = kafka.start()
            click.echo(f"cluster: Kafka up at {kafka.bootstrap} (pids {', '.join(map(str, pids))})")
            spark.start()
        except PipelineError:
            spark.stop()
            kafka.stop()
            raise
        click.echo(f"cluster: Spark up at {spark.master_url} with {spark.workers} workers "
                   f"(UI http://{spark.host}:{spark.webui_port}); logs in {settings.path('cluster_home')}")
        if settings["profile"] != "cluster":
            click.echo("cluster: run the pipeline on it with PROFILE=cluster")
    elif action == "down":
        n = spark.stop() + kafka.stop()
        click.echo(f"cluster: stopped {n} processes" if n else "cluster: was not running")
    else:
        down = 0
        for bootstrap, pid, ready in kafka.status():
            state = "up" if ready else ("not answering" if pid else "down")
            down += not ready
            click.echo(f"kafka {bootstrap}: {state}" + (f" (pid {pid})" if pid else ""))
        workers = spark.alive_workers()
        click.echo(f"spark {spark.master_url}: " + ("down" if workers is None else f"up, {workers} workers"))
        if down or workers is None or workers < spark.workers:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
