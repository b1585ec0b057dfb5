"""Bad operator input: each mistake ends in one line ``<stage>: error: ...``, a non-zero exit, and
within 30 seconds (the scripts run as subprocesses, as `make` runs them; the 30 s is their timeout,
so a hang fails the test). One test per case of the issue; a case that several stages meet is
parametrized over them. Other one-line errors (an unknown config key, Java too old, a port taken)
are in tests/integration/test_bad_input.py."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from tests.conftest import output_paths
from website_activity.devtools.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 30  # the promise: a clear end within 30 s


def isolated_env(out: Path, **extra: str) -> dict[str, str]:
    """The environment of a stage run by `make`, every output moved under ``out``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    env["WA_ROOT"] = str(ROOT)
    env.update({f"WA__PATHS__{key.upper()}": str(out / key) for key in output_paths()})
    env["WA__MLFLOW__TRACKING_URI"] = f"sqlite:///{out / 'mlflow.db'}"
    env["WA__MLFLOW__ARTIFACT_ROOT"] = str(out / "mlruns")
    env["WA__KAFKA__REQUEST_TIMEOUT_S"] = "5"
    env.update(extra)
    return env


def run_stage(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=LIMIT_S)


def one_error(proc: subprocess.CompletedProcess, stage: str) -> str:
    """The single ``<stage>: error:`` line; no traceback, a non-zero exit."""
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"{stage}: error: "), proc.stderr
    return lines[0]


STAGES = {"topics": ("topics.py",), "produce": ("produce.py", "--events", "10"), "ingest": ("ingest.py",),
          "broker": ("broker.py", "up")}


@pytest.mark.parametrize("stage", ["topics", "produce", "ingest"])
def test_broker_unreachable(stage, tmp_path) -> None:
    # nothing listens on the port: connection refused, every stage says so and how to start one
    port = free_port()
    proc = run_stage(*STAGES[stage], "--port", str(port), env=isolated_env(tmp_path))
    line = one_error(proc, stage)
    assert f"no Kafka broker answers at 127.0.0.1:{port}" in line and "make kafka-up" in line
    assert not (tmp_path / "runs" / "produce.json").exists()  # nothing claims to have been sent
    # the line names the stage's log, which holds what the libraries said (and the line itself)
    log = tmp_path / "logs" / f"{stage}.log"
    assert line.endswith(f" (log: {log})") and line in log.read_text()


@pytest.fixture
def web_server():
    """A port where something that is not Kafka answers (an HTTP server's canned reply)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(timeout=5)
    srv.close()


@pytest.mark.parametrize("wrong", ["controller port", "web server"])
@pytest.mark.parametrize("stage", ["topics", "produce"])
def test_wrong_port(stage, wrong, broker: EmbeddedBroker, web_server, tmp_path) -> None:
    # a typo'd port where something else listens: the broker's own KRaft controller listener
    # (9093 for 9092) speaks Kafka but serves no client, an HTTP server does not speak Kafka at all
    port = broker.controller_port if wrong == "controller port" else web_server
    proc = run_stage(*STAGES[stage], "--port", str(port), env=isolated_env(tmp_path))
    assert f"no Kafka broker answers at 127.0.0.1:{port}" in one_error(proc, stage)


@pytest.mark.parametrize("stage", ["produce", "ingest"])
def test_topic_missing(stage, broker: EmbeddedBroker, tmp_path) -> None:
    # the broker is up but `make topics` was not run: without the check, ingest would read nothing
    tag = uuid.uuid4().hex[:8]
    env = isolated_env(tmp_path, WA__TOPICS__NAMES=f"[a-{tag}, b-{tag}]",
                       WA__KAFKA__CONTROLLER_PORT=str(broker.controller_port))
    proc = run_stage(*STAGES[stage], "--port", str(broker.port), env=env)
    line = one_error(proc, stage)
    assert f"'a-{tag}'" in line and "run 'make topics'" in line


def test_malformed_yaml(tmp_path) -> None:
    # a local override with a YAML syntax error, in a copy of the project's conf/
    root = tmp_path / "project"
    shutil.copytree(ROOT / "conf", root / "conf")
    bad = root / "conf" / "local" / "override.yaml"
    bad.write_text("kafka:\n  port: [9092\n  host: 127.0.0.1\n")
    env = isolated_env(tmp_path)
    env["WA_ROOT"] = str(root)
    proc = run_stage("topics.py", env=env)
    assert proc.returncode == 2
    assert f"{bad}: not valid YAML (line 3)" in one_error(proc, "topics")


def test_unknown_profile(tmp_path) -> None:
    proc = run_stage("topics.py", "--profile", "nope", env=isolated_env(tmp_path))
    assert proc.returncode == 2
    line = one_error(proc, "topics")
    assert "unknown profile 'nope' (known: " in line and "local" in line


@pytest.mark.parametrize("stage", ["broker", "ingest"])
def test_java_missing(stage, tmp_path) -> None:
    # the broker needs Java, and so does Spark: ingest says so before it looks for a broker
    env = isolated_env(tmp_path, JAVA_HOME=str(tmp_path / "no-jdk"),
                       WA__KAFKA__CONTROLLER_PORT=str(free_port()))
    proc = run_stage(*STAGES[stage], "--port", str(free_port()), env=env)
    assert proc.returncode == 2
    assert "Java 17+ is required but not found" in one_error(proc, stage)


@pytest.mark.parametrize("stage, what, folder", [("broker", "Kafka broker", "broker"),
                                                 ("ingest", "Spark Kafka source and Delta Lake", "spark")])
def test_jvm_jars_missing(stage, what, folder, tmp_path) -> None:
    # `make setup` never fetched the jars (an empty paths.jvm)
    (tmp_path / "jvm").mkdir()
    env = isolated_env(tmp_path, WA__PATHS__JVM=str(tmp_path / "jvm"), WA__KAFKA__CONTROLLER_PORT=str(free_port()))
    proc = run_stage(*STAGES[stage], "--port", str(free_port()), env=env)
    assert proc.returncode == 2
    assert f"{what} jars missing in {tmp_path / 'jvm' / folder}: run 'make setup' first" in one_error(proc, stage)


@pytest.mark.parametrize("stage, key", [("produce", "runs"), ("ingest", "bronze")])
def test_output_folder_not_writable(stage, key, tmp_path) -> None:
    # tests run as root, whom chmod does not stop: the folder's parent is a regular file, which
    # fails for everyone (ENOTDIR). Produce must fail before it sends a record, not after the last.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    target = blocker / key
    env = isolated_env(tmp_path, **{f"WA__PATHS__{key.upper()}": str(target)})
    proc = run_stage(*STAGES[stage], "--port", str(free_port()), env=env)
    assert proc.returncode == 2
    assert f"cannot write to paths.{key} ({target}): Not a directory" in one_error(proc, stage)


@pytest.mark.parametrize("store", ["locked", "unreachable"])
def test_mlflow_store_locked_or_unreachable(store, tmp_path) -> None:
    # checked before the lake and Spark: training must not run for minutes, then fail to log
    env = isolated_env(tmp_path)
    if store == "unreachable":
        uri = f"http://127.0.0.1:{free_port()}"
        env["WA__MLFLOW__TRACKING_URI"] = uri
        proc = run_stage("train.py", env=env)
        line = one_error(proc, "train")
        assert f"the MLflow tracking server {uri} does not answer" in line
        return
    db = tmp_path / "mlflow.db"
    holder = sqlite3.connect(str(db))  # another process mid-write: an exclusive lock on the store
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        proc = run_stage("train.py", env=env)
    finally:
        holder.rollback()
        holder.close()
    line = one_error(proc, "train")
    assert f"the MLflow store {db} is locked by another process" in line
