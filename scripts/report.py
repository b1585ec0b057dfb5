"""make report: the CSV reports and the offline dashboard (reports/index.html), from the lake and MLflow."""

import click

from website_activity.adapters.lake import silver_path
from website_activity.adapters.spark import spark_session
from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.stages.report.report import pseudonymiser, run_report


@click.command()
@common_options
@main_wrapper("report")
def main(profile, port):
    """Write the CSVs of reports/README.md and reports/index.html."""
    settings = settings_from(profile, port)
    silver_path(settings)  # fail in a second, not after starting Spark
    pseudonymiser(settings)  # so does a hash mode without its key
    with spark_session(settings, "report") as spark:
        paths = run_report(spark, settings)
    click.echo(f"report: {len(paths)} files in {paths[0].parent}; open {paths[-1]}")


if __name__ == "__main__":
    main()
