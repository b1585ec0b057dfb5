"""The local cluster harness on free loopback ports: 3 KRaft brokers, a Spark master, 2 workers.

The pipeline's stages run as subprocesses (each its own Spark driver, as `make` runs them),
configured through ``WA__SECTION__KEY`` environment variables: every output goes to the test's
temp folder, the topics are the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import output_paths
from website_activity.core.config import Settings
from website_activity.devtools.broker import free_port
from website_activity.devtools.cluster import KafkaCluster, SparkStandalone

REPO = Path(__file__).resolve().parents[2]


# Module scope: only test_cluster.py uses it, and its 3 broker JVMs, Spark master and 2 workers
# stop when that file is done instead of idling (heartbeats, ~2 GB) beside the worker's later files.
@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, settings: Settings):
    home = tmp_path_factory.mktemp("cluster")
    kafka = KafkaCluster(home=home / "kafka", jvm_dir=settings.path("jvm") / "broker",
                         ports=[free_port() for _ in range(3)],
                         controller_ports=[free_port() for _ in range(3)], heap="320m")
    spark = SparkStandalone(home=home / "spark", port=free_port(), webui_port=free_port(),
                            workers=2, worker_cores=1, worker_memory="1g")
    try:
        kafka.start()
        spark.start()
        yield kafka, spark
    finally:
        spark.stop()
        kafka.stop()
    assert all(n.pid() is None for n in kafka.nodes)
    assert all(spark.pid(role) is None for role in spark.roles())


def stage_env(out: Path, **overrides: Any) -> dict[str, str]:
    """The environment of a stage subprocess: outputs under ``out``, then ``overrides``
    (dotted keys with ``__`` for dots, as in ``make_settings``)."""
    values: dict[str, Any] = {f"paths.{key}": str(out / key) for key in output_paths()}
    values["mlflow.tracking_uri"] = f"sqlite:///{out / 'mlflow.db'}"
    values["mlflow.artifact_root"] = str(out / "mlruns")
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    env["WA_ROOT"] = str(REPO)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    for dotted, value in values.items():
        env["WA__" + dotted.upper().replace(".", "__")] = (
            value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip())
    return env


def run_stage(script: str, env: dict[str, str], *args: str, profile: str = "cluster",
              timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>.py`` as `make` does; fail the test with its output if it fails."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / f"{script}.py"), "--profile", profile, *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def start_stage(script: str, env: dict[str, str], *args: str, profile: str = "cluster",
                log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / f"{script}.py"), "--profile", profile, *args],
                            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def topic_names() -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"ca-{tag}", f"cb-{tag}"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
