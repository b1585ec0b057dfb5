"""Shared fixtures: one configuration, one SparkSession for the whole session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from website_activity.config import Settings, load_config

OUTPUT_PATHS = ("data", "silver", "quarantine", "checkpoints", "validation", "models", "reports",
                "kafka_home", "gx")
OUTPUT_PATHS += ("features", "predictions", "ground_truth", "runs")  # train and score read/write these


def make_settings(out: Path, **overrides: Any) -> Settings:
    """The repository's configuration with every output (lake, MLflow, broker home) under ``out``.

    ``overrides`` use dotted keys with ``__`` for dots: ``kafka__port=1234``.
    """
    values: dict[str, Any] = {f"paths.{key}": str(out / key) for key in OUTPUT_PATHS}
    values["mlflow.tracking_uri"] = f"sqlite:///{out / 'mlflow.db'}"
    values["mlflow.artifact_root"] = str(out / "mlruns")
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    return load_config("local", values, environ=env)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The configuration with every output path moved into a temp folder."""
    return make_settings(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="session")
def spark(settings: Settings):
    """One local[2] SparkSession (UI off, few shuffle partitions, Kafka source on the classpath)."""
    from website_activity.spark import get_spark, stop_spark

    session = get_spark(settings, app_suffix="tests")
    yield session
    stop_spark(session)  # and its JVM: no Spark process outlives the suite
