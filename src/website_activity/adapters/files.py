"""Files a reader never sees half written, and the JSON manifests stages hand each other."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed onto ``path`` when the
    block succeeds (one rename: a reader finds the old file or the new one), removed when it fails.
    The name holds the process id, so two writers never share a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """``text`` into ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, doc: Any, *, sort_keys: bool = False, default: Any = str) -> Path:
    """``doc`` as indented JSON into ``path`` atomically; ``default`` turns what JSON cannot hold
    into what it can (text, unless told otherwise)."""
    return write_text(path, json.dumps(doc, indent=2, default=default, sort_keys=sort_keys) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A manifest or summary, or None when it is missing or unreadable (its stage did not run)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
