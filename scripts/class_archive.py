"""make setup: the Spark driver's class-data sharing archive (.jvm/cds), written once per JDK and jar set."""
import click

from website_activity.adapters.spark import build_class_archive
from website_activity.cli import common_options, main_wrapper, settings_from


@click.command()
@common_options
@main_wrapper("setup")
def main(profile, port):
    """Write the archive if it is missing (about 140 MB; later Spark starts map it)."""
    archive = build_class_archive(settings_from(profile, port))
    if archive is not None:
        click.echo(f"setup: class-data sharing archive {archive.name} ({archive.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
