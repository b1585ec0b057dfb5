"""make report: CSV summaries of data/silver and of the MLflow runs, into reports/."""

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.report import run_report
from website_activity.spark import spark_session
from website_activity.lake import silver_path


@click.command()
@common_options
@main_wrapper("report")
def main(profile, port):
    """Write traffic_by_page.csv, traffic_by_device.csv and model_metrics.csv."""
    settings = settings_from(profile, port)
    silver_path(settings)  # fail in a second, not after starting Spark
    with spark_session(settings, "report") as spark:
        paths = run_report(spark, settings)
    click.echo(f"report: {len(paths)} files in {paths[0].parent}: {', '.join(p.name for p in paths)}")


if __name__ == "__main__":
    main()
