"""The manifests stages hand each other as typed records (core.manifests), and their files (no engine)."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError

import pytest

from website_activity.adapters.files import read_manifest, require_manifest, write_json, write_manifest
from website_activity.core.errors import PipelineError
from website_activity.core.manifests import (MANIFESTS, ChampionCard, IngestSummary, ModelMetrics, ProduceManifest,
                                             ValidationGate)

# What each stage writes today, keys in the order it writes them (ingest: stages.ingest.finish_run).
PRODUCE = {
    "seed": 7, "events": 100, "records": 104, "sent": 104, "failed": 0,
    "faults": {"duplicate": 2, "malformed": 1, "bad_field": 1, "late": 0},
    "bytes": 40000, "first_event_time": "2026-01-05T08:00:00.000+00:00",
    "last_event_time": "2026-01-05T09:00:00.000+00:00", "seconds": 1.234, "rate": 84.3, "live_rate": 0.0,
    "options": {"duration": None, "rate": None, "start": None, "live": False, "compression_type": "lz4",
                "linger_ms": 20, "batch_size": 262144},
    "ground_truth": ["/lake/ground_truth/producer-a.parquet"],
    "topics": [{"topic": "producer-a", "events": 100, "records": 104, "sent": 104, "failed": 0}],
}
INGEST = {
    "records_read": 104, "silver": 100, "quarantined": 2, "duplicates_removed": 2,
    "quarantine_by_reason": {"bad_enum:browser": 1, "not_json": 1},
    "late": 1, "gold_dropped_by_watermark": 1, "gold_rows": 42, "silver_files": 3, "silver_avg_file_bytes": 1000,
    "seconds": 12.5, "batches": 2, "rate": 8.3,
    "latency_s": {"p50": 0.6, "p95": 1.2, "p99": 1.2, "max": 1.4},
    "run": {"records_read": 104, "silver": 100, "quarantined": 2, "duplicates_removed": 2},
    "ledger_batches": 2,
    "tables": {k: {"files": 1, "bytes": 10, "avg_file_bytes": 10, "rows": 1, "version": 0}
               for k in ("bronze", "silver", "quarantine", "gold")},
    "watermark_delay_s": 600, "finished_at": "2026-01-05T09:01:00+00:00", "reconciled": True,
}
GATE = {
    "timestamp": "2026-01-05T09:02:00+00:00", "status": "failed", "rows": 100, "expectations": 40,
    "seconds": 3.2, "suites": {"silver": "failed", "reconciliation": "passed"},
    "failures": [{"suite": "silver", "expectation": "expect_column_values_to_not_be_null", "column": "user_id"}],
    "fingerprint": "silver@3 quarantine@1", "silver_version": 3, "quarantine": {"rows": 2, "rate": 0.019608},
    "ingest": {"records_read": 104, "duplicates_removed": 2}, "data_docs": "/r/data_docs/index.html",
    "summary_csv": "/r/data_quality.csv",
}
METRICS = {
    "run_id": "abc", "version": "3", "params": {"seed": 42}, "metrics": {"roc_auc": 0.75}, "threshold": 0.3,
    "promotion": {"promoted": True, "reason": "first champion", "version": "3", "previous_version": None,
                  "previous_val_roc_auc": None},
    "coefficients_per_unit": {"(intercept)": -2.0, "n_events": 0.1},
}
# card.json: built in this order by train, written with its keys sorted
CARD = {"name": "m", "version": "3", "run_id": "abc", "model_uri": "models:/m@champion", "threshold": 0.3,
        "inputs": ["n_events"], "params": {"seed": 42}, "metrics": {"roc_auc": 0.75}}
DOCS = {ProduceManifest: PRODUCE, IngestSummary: INGEST, ValidationGate: GATE, ModelMetrics: METRICS,
        ChampionCard: CARD}


@pytest.mark.parametrize("cls", MANIFESTS, ids=lambda c: c.__name__)
def test_a_record_gives_back_the_document_it_was_read_from_keys_in_order(cls) -> None:
    doc = DOCS[cls]
    record = cls.from_dict(doc)
    assert record.to_dict() == doc and list(record.to_dict()) == list(doc)
    assert cls.from_dict(record.to_dict()) == record
    assert set(cls.keys()) == set(doc)  # the record knows every key its stage writes
    with pytest.raises(FrozenInstanceError):
        record.extra = {}  # type: ignore[misc]


@pytest.mark.parametrize("cls", MANIFESTS, ids=lambda c: c.__name__)
def test_its_file_is_the_json_the_stage_wrote_before_byte_for_byte(cls, tmp_path) -> None:
    doc = DOCS[cls]
    old = write_json(tmp_path / "old.json", doc, sort_keys=cls.SORT_KEYS, default=cls.JSON_DEFAULT)
    new = write_manifest(tmp_path / "new.json", cls.from_dict(doc))
    assert new.read_bytes() == old.read_bytes()
    assert read_manifest(new, cls) == cls.from_dict(doc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "old.json"]  # no temporary left


def test_the_ingest_summary_reads_what_ingest_writes_today(tmp_path) -> None:
    # finish_run writes its dict with write_json(path, summary): the record reads it whole
    path = write_json(tmp_path / "ingest.json", INGEST)
    summary = read_manifest(path, IngestSummary)
    assert summary is not None and summary.extra == {}
    assert (summary.records_read, summary.silver, summary.quarantined, summary.duplicates_removed) == (104, 100, 2, 2)
    assert summary.reconciled is True and summary.latency_s["p95"] == 1.2
    assert summary.tables["gold"]["rows"] == 1 and summary.quarantine_by_reason == {"bad_enum:browser": 1,
                                                                                   "not_json": 1}


def test_an_older_file_without_an_optional_key_reads_with_its_default(tmp_path) -> None:
    old = {k: v for k, v in INGEST.items() if k not in ("latency_s", "silver_files", "reconciled")}
    summary = IngestSummary.from_dict(old)
    assert summary.latency_s is None and summary.silver_files is None and summary.reconciled is False
    gate = ValidationGate.from_dict({k: v for k, v in GATE.items() if k not in ("silver_version", "fingerprint")})
    assert gate.silver_version is None and gate.fingerprint is None and not gate.passed
    produce = ProduceManifest.from_dict({k: v for k, v in PRODUCE.items() if k not in ("seed", "live_rate")})
    assert produce.seed is None and produce.live_rate == 0.0
    metrics = ModelMetrics.from_dict({k: v for k, v in METRICS.items() if k != "coefficients_per_unit"})
    assert metrics.coefficients_per_unit == {} and metrics.promotion["promoted"]


def test_a_key_from_a_newer_writer_is_kept_and_written_back_last() -> None:
    newer = {**INGEST, "compacted": True}
    summary = IngestSummary.from_dict(newer)
    assert summary.extra == {"compacted": True}
    assert summary.to_dict() == newer and list(summary.to_dict())[-1] == "compacted"


@pytest.mark.parametrize("cls", MANIFESTS, ids=lambda c: c.__name__)
def test_a_missing_required_key_is_one_line_naming_the_file_and_the_key(cls, tmp_path) -> None:
    key = cls.required()[0]
    path = write_json(tmp_path / cls.FILE, {k: v for k, v in DOCS[cls].items() if k != key})
    with pytest.raises(PipelineError) as excinfo:
        read_manifest(path, cls)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message == f"{path}: the required key {key!r} is missing: run {cls.WRITER} again"
    with pytest.raises(PipelineError, match=rf"^{cls.FILE}: the required key '{key}' is missing"):
        cls.from_dict({k: v for k, v in DOCS[cls].items() if k != key})


def test_the_required_keys() -> None:
    assert IngestSummary.required() == ("records_read", "silver", "quarantined", "duplicates_removed")
    assert ProduceManifest.required() == ("events", "records", "sent", "failed", "faults")
    assert ValidationGate.required() == ("timestamp", "status", "rows", "expectations", "failures")
    assert ModelMetrics.required() == ("run_id", "version", "params", "metrics")
    assert ChampionCard.required() == ("name", "version", "run_id", "model_uri")


def test_a_missing_file_is_none_a_broken_one_an_error(tmp_path) -> None:
    assert read_manifest(tmp_path / "latest.json", ValidationGate) is None
    with pytest.raises(PipelineError, match=r"^no .*latest\.json: run make validate first$"):
        require_manifest(tmp_path / "latest.json", ValidationGate)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PipelineError, match=r"bad\.json: not valid JSON \(.*\): run make validate again$"):
        read_manifest(tmp_path / "bad.json", ValidationGate)
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(PipelineError, match=r"list\.json: not a JSON object but list: run make ingest again$"):
        read_manifest(tmp_path / "list.json", IngestSummary)


def test_metrics_hold_numpy_figures_as_numbers(tmp_path) -> None:
    np = pytest.importorskip("numpy")
    record = ModelMetrics.from_dict({**METRICS, "metrics": {"roc_auc": np.float32(0.5)}})
    assert json.loads(write_manifest(tmp_path / "m.json", record).read_text())["metrics"] == {"roc_auc": 0.5}
