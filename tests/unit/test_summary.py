"""The table make all ends with, from the stages' files (no engine, no broker)."""

from __future__ import annotations

import json

from tests.conftest import make_settings
from website_activity.cli.summary import StageRun, quarantine_kinds, stage_results, summary_table


def test_quarantine_reasons_are_grouped_by_kind_largest_first() -> None:
    assert quarantine_kinds({"missing_field:user_id": 4, "not_json": 41, "missing_field:page_url": 2,
                             "bad_enum:browser": 2}) == {"not_json": 41, "missing_field": 6, "bad_enum": 2}


def test_the_table_shows_each_stage_its_seconds_and_a_failure(tmp_path) -> None:
    runs = [StageRun("produce", 0, 1.25), StageRun("ingest", 2, 20.0)]
    table = summary_table(runs, {"produce": "20 events", "ingest": "never shown"}).splitlines()
    assert table[1].split() == ["produce", "1.2", "20", "events"]
    assert table[2].split() == ["ingest", "20.0", "FAILED", "(exit", "2)"]
    assert table[3].split() == ["total", "21.2"]


def test_results_come_from_the_stages_files(tmp_path) -> None:
    settings = make_settings(tmp_path)
    runs = settings.path("runs")
    runs.mkdir(parents=True)
    (runs / "produce.json").write_text(json.dumps({"events": 100, "faults": {"a": 2, "b": 1}, "sent": 103,
                                                   "records": 103, "failed": 0}))
    (runs / "ingest.json").write_text(json.dumps({"records_read": 103, "silver": 100, "quarantined": 3,
                                                  "duplicates_removed": 0, "quarantine_by_reason": {"not_json": 3},
                                                  "reconciled": True}))
    models = settings.path("models")
    models.mkdir(parents=True)
    (models / "metrics.json").write_text(json.dumps({"run_id": "r1", "version": "3", "params": {},
                                                     "metrics": {"roc_auc": 0.75, "oracle_roc_auc": 0.8},
                                                     "promotion": {"promoted": True, "version": "3"}}))
    results = stage_results(settings)
    assert results["produce"] == "100 events + 3 faults: 103 of 103 records sent"
    assert results["ingest"] == "silver 100, quarantined 3 (not_json 3), duplicates removed 0"
    assert results["train"] == "test ROC AUC 0.750 vs oracle 0.800; version 3 is champion"
    assert "validate" not in results and "score" not in results  # those stages left nothing


def test_a_broken_file_shows_its_one_line_error_in_the_table(tmp_path) -> None:
    settings = make_settings(tmp_path)
    runs = settings.path("runs")
    runs.mkdir(parents=True)
    (runs / "ingest.json").write_text(json.dumps({"silver": 100, "quarantined": 3, "duplicates_removed": 0}))
    (runs / "produce.json").write_text("{not json")
    results = stage_results(settings)
    assert results["ingest"] == f"{runs / 'ingest.json'}: the required key 'records_read' is missing: run make ingest again"
    assert results["produce"].startswith(f"{runs / 'produce.json'}: not valid JSON")
