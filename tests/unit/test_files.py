"""Atomic writes and the manifests stages hand each other (no engine)."""

from __future__ import annotations

import json

import pytest

from website_activity.adapters.files import atomic_path, read_json, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = write_text(tmp_path / "sub" / "a.txt", "old\n")  # the folder is made
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer died")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_json_round_trip_and_what_json_cannot_hold(tmp_path) -> None:
    from datetime import date

    path = write_json(tmp_path / "m.json", {"b": 1, "a": date(2026, 12, 1)}, sort_keys=True)
    assert path.read_text() == '{\n  "a": "2026-12-01",\n  "b": 1\n}\n'
    assert read_json(path) == {"a": "2026-12-01", "b": 1}
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_json(tmp_path / "bad.json") is None
    assert json.loads(write_json(tmp_path / "f.json", {"x": 1.5}, default=float).read_text()) == {"x": 1.5}
