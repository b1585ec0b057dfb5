"""Files a reader never sees half written, and the JSON manifests stages hand each other."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

from website_activity.core.errors import PipelineError, first_line
from website_activity.core.manifests import Manifest

M = TypeVar("M", bound=Manifest)


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


def read_manifest(path: Path, cls: type[M]) -> M | None:
    """The typed record of a manifest (``cls``, a :class:`~website_activity.core.manifests.Manifest`),
    or None when the file does not exist (its stage did not run).

    Raises:
        PipelineError: The file is there but cannot be read, is not JSON, or lacks a required key
            (one line naming the file, and the key).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PipelineError(f"cannot read {path}: {exc.strerror or first_line(exc)}{cls.rerun()}") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise PipelineError(f"{path}: not valid JSON ({first_line(exc)}){cls.rerun()}") from exc
    return cls.from_dict(doc, source=str(path))


def require_manifest(path: Path, cls: type[M]) -> M:
    """:func:`read_manifest` for a reader that cannot go on without the file.

    Raises:
        PipelineError: The file is missing, or :func:`read_manifest` fails.
    """
    record = read_manifest(path, cls)
    if record is None:
        raise PipelineError(f"no {path}{cls.rerun().replace(' again', ' first')}")
    return record


def write_manifest(path: Path, record: Manifest) -> Path:
    """A record as its JSON file, atomically: indented, keys in the record's order (sorted for
    the records that sort them), what JSON cannot hold turned by the record's ``JSON_DEFAULT``."""
    return write_json(path, record.to_dict(), sort_keys=record.SORT_KEYS, default=record.JSON_DEFAULT)
