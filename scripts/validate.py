"""make validate: the Great Expectations quality gate on data/silver (non-zero exit on failure)."""

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.lake import silver_path
from website_activity.spark import spark_session
from website_activity.validate import run_validate


@click.command()
@common_options
@main_wrapper("validate")
def main(profile, port):
    """Check silver against the suite generated from schema.fields and schema.enums.

    Writes data/_validation/latest.json; exits 3 when an expectation fails.
    """
    settings = settings_from(profile, port)
    silver_path(settings)  # fail in a second, not after starting Spark
    with spark_session(settings, "validate") as spark:
        report = run_validate(spark, settings)
    click.echo(f"validate: passed, {report.expectations} expectations on {report.rows} rows "
               f"({report.seconds:.1f}s) -> {settings.path('validation') / 'latest.json'}")


if __name__ == "__main__":
    main()
