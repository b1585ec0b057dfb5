"""Java and the JVM parts fetched by ``make setup`` (the broker's and Spark's jars, kept apart)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from website_activity.core.errors import PipelineError

MIN_JAVA = 17


def java_executable() -> str:
    """The ``java`` to run: ``$JAVA_HOME/bin/java`` if JAVA_HOME is set, else the one on PATH.

    Raises:
        PipelineError: No Java is found, or it is older than 17.
    """
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        where = f"JAVA_HOME={home} has no bin/java" if home else "no 'java' on PATH"
        raise PipelineError(f"Java {MIN_JAVA}+ is required but not found ({where}): install a JDK {MIN_JAVA} or set JAVA_HOME")
    major = java_major(java)
    if major < MIN_JAVA:
        raise PipelineError(f"Java {MIN_JAVA}+ is required, found Java {major} at {java}: install a JDK {MIN_JAVA} or set JAVA_HOME")
    return java


def java_major(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PipelineError(f"cannot run {java} -version: {exc}") from exc
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        raise PipelineError(f"cannot read the Java version from {java} -version")
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major  # "1.8" -> 8


def jars(folder: Path, what: str) -> list[Path]:
    """The jars of one classpath folder under ``paths.jvm``.

    Raises:
        PipelineError: The folder is empty or missing (``make setup`` was not run).
    """
    found = sorted(folder.glob("*.jar"))
    if not found:
        raise PipelineError(f"{what} jars missing in {folder}: run 'make setup' first")
    return found
