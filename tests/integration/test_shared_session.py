"""`make all`'s Spark stages share one process and one SparkSession, each with its own log.

A child process runs two routed stages (:func:`website_activity.cli.stage_output`) on one
:func:`website_activity.adapters.spark.shared_session`, as ``make all`` does with ingest .. report: the
JVM starts once, what it prints while a stage runs lands in that stage's log (not the first
stage's, whose descriptors it inherited), the stages' own lines reach the terminal, and no
Spark process outlives the block.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reliability.test_operator_input import isolated_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import os, click
    from website_activity.adapters.spark import shared_session, spark_session
    from website_activity.cli import stage_output
    from website_activity.core.config import load_config

    settings = load_config(None, {})
    pids = []
    with shared_session():
        for stage in ("first", "second"):
            with stage_output(stage, {}):
                click.echo(f"{stage}: own line")
                with spark_session(settings, stage) as spark:
                    spark.sparkContext._jvm.java.lang.System.err.println(f"jvm line of {stage}")
                    spark.sparkContext._jvm.java.lang.System.out.println(f"jvm stdout of {stage}")
                    assert spark.range(5).count() == 5
                    pids.append(spark.sparkContext._gateway.proc.pid)
    click.echo(f"after: jvm pids {sorted(set(pids))}")
""")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_two_stages_on_one_session_keep_their_own_logs(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the terminal: the stages' own lines and the line after the block, nothing of the JVM
    assert proc.stdout.splitlines()[:2] == ["first: own line", "second: own line"], proc.stdout
    assert "jvm" not in proc.stdout.replace("jvm pids", "") and "jvm" not in proc.stderr, proc.stdout + proc.stderr
    pids = [int(p) for p in proc.stdout.split("jvm pids [", 1)[1].split("]")[0].split(",")]
    assert len(pids) == 1  # one JVM for both stages
    assert not alive(pids[0])  # stopped with the block
    first = (tmp_path / "logs" / "first.log").read_text()
    second = (tmp_path / "logs" / "second.log").read_text()
    assert "first: own line" in first and "jvm line of first" in first and "jvm stdout of first" in first
    assert "jdk.incubator.vector" in first  # the JVM's start-up warning: while the first stage ran
    assert "second" not in first
    assert "second: own line" in second and "jvm line of second" in second and "jvm stdout of second" in second
    assert "first" not in second
