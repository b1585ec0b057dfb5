"""make validate: the Great Expectations quality gate on the lake (non-zero exit on failure)."""

import click

from website_activity.adapters.lake import silver_path
from website_activity.adapters.spark import spark_session
from website_activity.cli import common_options, echo_err, main_wrapper, settings_from
from website_activity.core.catalog import data_docs_index, quality_csv_path, validation_gate_path
from website_activity.core.errors import ValidationFailed
from website_activity.stages.validate import run_validate, save_project


def _relative(path, settings):
    return path.relative_to(settings.root) if path.is_relative_to(settings.root) else path


@click.command()
@common_options
@click.option("--save-only", is_flag=True,
              help="Only write the suites generated from the config into gx/ (needs no data).")
@main_wrapper("validate")
def main(profile, port, save_only):
    """Check the whole lake against the suites generated from conf/base.yaml (schema, validation).

    Writes Data Docs (reports/data_docs/index.html), reports/data_quality.csv and
    data/_validation/latest.json (which make train reads); exits 3 when an expectation fails.
    """
    settings = settings_from(profile, port)
    if save_only:
        click.echo(f"validate: suites saved in {_relative(save_project(settings), settings)}/")
        return
    silver_path(settings)  # fail in a second, not after starting Spark
    where = (f"Data Docs {_relative(data_docs_index(settings), settings)}, "
             f"summary {_relative(quality_csv_path(settings), settings)}")
    try:
        with spark_session(settings, "validate") as spark:
            report = run_validate(spark, settings)
    except ValidationFailed as exc:
        failed = exc.report.failures
        echo_err(f"validate: {len(failed)} of {exc.report.expectations} expectations failed "
                   f"on {exc.report.rows} rows:")
        for f in failed:
            echo_err(f"  [{f.suite}] {f.describe()}")
        echo_err(f"  {where}")
        raise ValidationFailed(f"{len(failed)} of {exc.report.expectations} expectations failed "
                               f"(listed above; details in {_relative(validation_gate_path(settings), settings)})",
                               exc.report) from exc
    click.echo(f"validate: passed, {report.expectations} expectations on {report.rows} rows "
               f"({report.seconds:.1f}s); {where}; gate {_relative(validation_gate_path(settings), settings)}")


if __name__ == "__main__":
    main()
