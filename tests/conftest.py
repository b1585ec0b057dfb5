"""Shared fixtures: one configuration, one SparkSession for the whole session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from website_activity.core.config import Settings, load_config

# Every path of the configuration except the fetched jars is an output: tests move them all.
INPUT_PATHS = ("jvm",)


def output_paths() -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    return [key for key in load_config("local", {}, environ=env)["paths"] if key not in INPUT_PATHS]


def make_settings(out: Path, **overrides: Any) -> Settings:
    """The repository's configuration with every output (lake, MLflow, broker home) under ``out``.

    ``overrides`` use dotted keys with ``__`` for dots: ``kafka__port=1234``.
    """
    values: dict[str, Any] = {f"paths.{key}": str(out / key) for key in output_paths()}
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
    from website_activity.adapters.spark import get_spark, stop_spark

    session = get_spark(settings, app_suffix="tests")
    yield session
    stop_spark(session)  # and its JVM: no Spark process outlives the suite


# The files that take minutes, slowest first (seconds in the last full run, 2 workers): with
# ``--dist loadfile --no-loadscope-reorder`` xdist hands files out in collection order, so the long
# ones start first and the short ones fill in at the end, instead of a long file starting last
# while the other worker idles (190 s idle at the end of a run in the default order).
SLOWEST_FIRST = (
    "tests/cluster/test_cluster.py",                  # ~540 with its harness
    "tests/e2e/test_make_all.py",                     # ~350
    "tests/integration/test_bench.py",                # ~225
    "tests/reliability/test_ingest_kill_points.py",   # ~205
    "tests/integration/test_ingest_crash.py",         # ~170
    "tests/reliability/test_secure.py",               # ~150
    "tests/integration/test_live.py",                 # ~100
    "tests/integration/test_ingest.py",               # ~90
)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: the rest as collected
