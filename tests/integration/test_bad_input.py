"""What a user gets wrong ends in one clear line and a non-zero exit, never a stack trace.

The cases of the fault suite (broker unreachable, wrong port, topic missing, malformed YAML, unknown
profile, Java or jars missing, output not writable, MLflow store locked) are in
tests/reliability/test_operator_input.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from website_activity.core.errors import PipelineError
from website_activity.devtools.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_unknown_config_key_from_the_environment() -> None:
    proc = run_script("topics.py", env={"WA__KAFKA__PROT": "1"})
    assert proc.returncode == 2
    assert "WA__KAFKA__PROT: unknown key 'kafka.prot'" in one_error_line(proc)


def test_java_too_old(tmp_path) -> None:
    # a stand-in JDK whose `java -version` answers like Java 11
    fake = tmp_path / "jdk11" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    fake.chmod(0o755)
    env = {"JAVA_HOME": str(tmp_path / "jdk11")}
    proc = run_script("broker.py", "--port", str(free_port()), "up",
                      env={**env, "WA__KAFKA__CONTROLLER_PORT": str(free_port()),
                           "WA__PATHS__KAFKA_HOME": str(tmp_path / "kafka")})
    assert proc.returncode == 2
    assert f"Java 17+ is required, found Java 11 at {fake}" in one_error_line(proc)
    setup = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], cwd=ROOT, capture_output=True,
                           text=True, env={**os.environ, **env}, timeout=60)
    assert setup.returncode == 2 and "Java 17+ is required, found '11'" in setup.stderr


def test_setup_refuses_without_java(tmp_path) -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "JAVA_HOME": str(tmp_path / "no-jdk")}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "setup: Java 17+ is required but not found: install a JDK 17 or set JAVA_HOME"


def test_broker_port_taken_names_port_and_key(tmp_path, settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        b = EmbeddedBroker(home=tmp_path, jvm_dir=settings.path("jvm") / "broker", port=port,
                           controller_port=free_port())
        with pytest.raises(PipelineError, match=rf"port {port} on 127.0.0.1 is already in use: set kafka.port"):
            b.start()
        assert b.pid() is None
