"""make reset (part of make all): remove the data layers and checkpoints for a fresh run."""

import shutil

import click

from website_activity.cli import common_options, main_wrapper, settings_from


@click.command()
@common_options
@main_wrapper("reset")
def main(profile, port):
    """Delete silver, quarantine, checkpoints, validation results and run manifests.

    MLflow runs (mlflow.db, mlruns/) are kept, so repeated runs can be compared.
    """
    settings = settings_from(profile, port)
    removed = []
    for key in ("bronze", "silver", "quarantine", "gold", "ground_truth", "checkpoints", "validation", "runs", "features", "predictions"):
        path = settings.path(key)
        if path.exists():
            shutil.rmtree(path)
            removed.append(str(path.relative_to(settings.root)) if path.is_relative_to(settings.root) else str(path))
    click.echo(f"reset: removed {', '.join(removed) if removed else 'nothing'}")


if __name__ == "__main__":
    main()
