"""Shared fixtures: one configuration, one SparkSession for the whole session."""

from __future__ import annotations

import os

import pytest

from website_activity.config import Settings, load_config


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The repository's configuration with every output path moved into a temp folder."""
    out = tmp_path_factory.mktemp("lake")
    overrides = {f"paths.{key}": str(out / key) for key in
                 ("data", "silver", "quarantine", "checkpoints", "validation", "models", "reports",
                  "kafka_home")}
    overrides["mlflow.tracking_uri"] = f"sqlite:///{out / 'mlflow.db'}"
    overrides["mlflow.artifact_root"] = str(out / "mlruns")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    return load_config("local", overrides, environ=env)


@pytest.fixture(scope="session")
def spark(settings: Settings):
    """One local[2] SparkSession (UI off, few shuffle partitions, Kafka source on the classpath)."""
    from website_activity.spark import get_spark

    session = get_spark(settings, app_suffix="tests")
    yield session
    session.stop()
