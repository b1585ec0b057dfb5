"""make score: the MLflow champion (models:/<name>@champion) scores every session of the lake."""

import click

from website_activity.adapters.lake import silver_path
from website_activity.adapters.spark import spark_session
from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.cli.preflight import check_tracking_store
from website_activity.stages.score import champion_uri, run_score


@click.command()
@common_options
@main_wrapper("score")
def main(profile, port):
    """Score sessions with the champion: data/predictions (Parquet) and reports/predictions.csv."""
    settings = settings_from(profile, port)
    check_tracking_store(settings)
    silver_path(settings)  # fail in a second, not after starting Spark
    with spark_session(settings, "score") as spark:
        r = run_score(spark, settings)
    conf = settings["mlflow"]
    click.echo(f"score: {r['rows']} sessions scored by {champion_uri(conf['registered_model'], conf['champion_alias'])} "
               f"(version {r['version']}, "
               f"run {r['run_id']}) in {r['seconds']:.1f}s ({r['rows_per_s']:.0f} rows/s), "
               f"{r['positive']} predicted to buy -> {r['csv']}")


if __name__ == "__main__":
    main()
