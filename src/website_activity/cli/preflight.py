"""Checks a stage runs before its real work, so operator mistakes end in one line within seconds.

Each check raises :class:`PipelineError` with the cause and the fix. They are cheap (no Spark,
a few network round trips at most), and they run before a stage sends, writes or starts a JVM:
a stage that would fail late (a manifest that cannot be written after every record was sent,
an MLflow store that refuses the run after minutes of training) fails first instead.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError


def check_writable(settings: Settings, *keys: str) -> None:
    """Each ``paths.<key>`` exists (created if missing) and a file can be written in it.

    Raises:
        PipelineError: A folder cannot be created or written (a parent is a file, a read-only
            mount, no space, no permission), naming the key and the path.
    """
    for key in keys:
        path = settings.path(key)
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise PipelineError(f"cannot write to paths.{key} ({path}): {why}: "
                                f"set paths.{key} to a writable folder") from exc


def check_tracking_store(settings: Settings, timeout_s: float = 5.0) -> None:
    """The MLflow tracking store of ``mlflow.tracking_uri`` answers and takes writes.

    * ``sqlite:///file``: its folder is writable and the database can be locked for writing
      within ``timeout_s`` (another process holding it locked is reported as such);
    * ``http(s)://``: the server answers ``/health`` within ``timeout_s``.

    Raises:
        PipelineError: The store is locked, unreachable or not writable.
    """
    uri = settings.tracking_uri
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipelineError(f"the MLflow store {path} cannot be created ({exc.strerror}): "
                                "set mlflow.tracking_uri to a writable place") from exc
        try:
            con = sqlite3.connect(str(path), timeout=timeout_s)
            try:
                con.execute("BEGIN IMMEDIATE")  # a write lock, given back at once
                con.rollback()
            finally:
                con.close()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise PipelineError(f"the MLflow store {path} is locked by another process (still locked "
                                    f"after {timeout_s:.0f}s): wait for it to finish, or stop it") from exc
            raise PipelineError(f"the MLflow store {path} cannot be opened for writing: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise PipelineError(f"the MLflow store {path} is not an SQLite database: {exc}") from exc
    elif parsed.scheme in ("http", "https"):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
        except requests.RequestException as exc:
            raise PipelineError(f"the MLflow tracking server {uri} does not answer "
                                f"({type(exc).__name__}): start it or fix mlflow.tracking_uri") from exc

