"""make mlflow-ui: the MLflow UI over the project's tracking store, on mlflow.ui_host (127.0.0.1) and
mlflow.ui_port; prints the address of the training runs and of the registered model."""

import os
import sys

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.stages.train.train import artifact_location, ui_links


@click.command()
@common_options
@click.option("--ui-port", type=int, default=None, help="The UI's port (overrides mlflow.ui_port).")
@main_wrapper("mlflow-ui")
def main(profile, port, ui_port):
    """Run `mlflow ui` (in the foreground; Ctrl-C stops it) over mlflow.tracking_uri."""
    settings = settings_from(profile, port, **{"mlflow.ui_port": ui_port})
    conf = settings["mlflow"]
    host = conf["ui_host"]
    base = f"http://{host}:{conf['ui_port']}"
    args = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "ui", "--host", host,
            "--port", str(conf["ui_port"]), "--backend-store-uri", settings.tracking_uri,
            "--default-artifact-root", artifact_location(settings)]
    click.echo(f"mlflow-ui: {base} over {settings.tracking_uri} (Ctrl-C stops it)", err=True)
    for label, url in ui_links(settings, base):
        click.echo(f"mlflow-ui: {label}: {url}", err=True)
    sys.stdout.flush()
    os.execv(args[0], args)  # the server replaces this process: its pid is the one to stop


if __name__ == "__main__":
    main()
