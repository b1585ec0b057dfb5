"""`make bench` runs end to end and writes well-formed figures (no assertion on timings).

Runs ``scripts/bench.py`` with 6,000 events (the fewest with which train's three splits hold
purchases, as in the cluster and secure tests), not the 100,000 of ``--quick``, and one run per
baseline, with its own broker and scratch lake in a temp folder and its output in another. Every
figure is still computed and checked; only their values, which this test does not judge, change
with the volume. The same goes for the two phases after the pipeline: the batch-growth phase runs on
two batches of 1,000 records per lake size, not three of 10,000 (a warm-up and one timed batch),
and the live phase for 10 s, not 30 (``--growth-batch``, ``--growth-batches``, ``--live-seconds``). Most of its time is the seven stages'
process and Spark starts.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from website_activity.devtools.bench import CSV_FIELDS, STAGES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EVENTS = 6_000
GROWTH_BATCH = 1_000
GROWTH_BATCHES = 2
LIVE_SECONDS = 10
FIGURES = {
    "naive_events_per_s", "generator_events_per_s", "producer_performance_records_per_s",
    "producers_records_per_s", "spark_batch_records_per_s", "ingest_records_per_s", "validate_seconds",
    "train_seconds", "model_roc_auc", "oracle_roc_auc", "score_rows_per_s", "pipeline_seconds",
    "silver_files", "silver_avg_file_mb", "producer_peak_rss_mb", "spark_driver_peak_rss_mb",
    "broker_peak_rss_mb", "ingest_batch_10k_s", "ingest_batch_growth", "model_oracle_gap", "model_true_signs",
    # the live phase (make live for LIVE_SECONDS at this volume); the percentiles need ingest.json's latency_s
    "live_latency_p50_s", "live_latency_p95_s", "live_latency_p99_s", "live_sustained_events_per_s",
}
# A gap to the oracle may be below zero (the model beat the true probabilities on a small test split).
SIGNED = {"model_oracle_gap"}
WITH_BASELINE = {"generator_events_per_s", "producers_records_per_s", "ingest_records_per_s"}


def stamps() -> dict[str, int | None]:
    """Modification times of what the user's pipeline owns in the checkout (None: absent)."""
    paths = [ROOT / "mlflow.db", ROOT / "reports" / "bench.json", ROOT / "data"]
    if (ROOT / "data").is_dir():
        paths += sorted((ROOT / "data").iterdir())
    return {str(p): p.stat().st_mtime_ns if p.exists() else None for p in paths}


def test_bench_writes_every_figure(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    stale = out / "bench_logs" / "live-99000.log"  # an earlier run's live rate: not this run's
    stale.parent.mkdir(parents=True)
    stale.write_text("live: an earlier run\n")
    before = stamps()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    # the bench's ingest of EVENTS is a bulk replay at this threshold (at 1M events it is one by default)
    env["WA__SPARK__BULK_RECORDS"] = str(EVENTS // 2)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--events", str(EVENTS),
                           "--runs", "1", "--out-dir", str(out), "--workdir", str(work),
                           "--growth-batch", str(GROWTH_BATCH),
                           "--growth-batches", str(GROWTH_BATCHES), "--live-seconds", str(LIVE_SECONDS)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| figure | value |" in proc.stdout

    doc = json.loads((out / "bench.json").read_text())
    assert doc["events"] == EVENTS
    figures = doc["figures"]
    assert set(figures) == FIGURES
    for key, f in figures.items():
        assert isinstance(f["value"], (int, float)) and (f["value"] > 0 or key in SIGNED), key
    assert -1 < figures["model_oracle_gap"]["value"] < 1  # a difference of two ROC AUCs
    assert 0 < figures["model_true_signs"]["value"] <= 8  # of the 8 true coefficients
    # the batch-growth phase: a 10k batch timed on the lake as it is, then with 3x the events in it
    assert figures["ingest_batch_growth"]["baseline"] == figures["ingest_batch_10k_s"]["value"]
    assert doc["batch_growth"]["records_per_batch"] == GROWTH_BATCH
    assert {k: len(v) for k, v in doc["batch_growth"]["seconds"].items()} == {"1x": GROWTH_BATCHES, "3x": GROWTH_BATCHES}
    # each batch's phases, as its ledger entry has them (what a slow batch spent its time on)
    assert all(len(p) == GROWTH_BATCHES and all(b["silver"] > 0 for b in p)
               for p in doc["batch_growth"]["phases"].values())
    for key in WITH_BASELINE:
        assert figures[key]["baseline"] > 0 and figures[key]["ratio"] > 0, key
    assert list(doc["stages_seconds"]) == list(STAGES)
    assert all(v > 0 for v in doc["stages_seconds"].values())
    assert figures["pipeline_seconds"]["value"] == pytest.approx(sum(doc["stages_seconds"].values()), rel=1e-3)
    for when in ("machine_start", "machine_end"):
        m = doc[when]
        assert m["cores"] >= 1 and m["memory_gb"] > 0 and len(m["load_average"]) == 3
    # the bench's ingest is the real one: what it read reconciles with the lake
    assert doc["ingest"]["reconciled"] is True and doc["ingest"]["records"] >= EVENTS
    # each stage's output beside the figures, of this run only
    logs = {p.name for p in (out / "bench_logs").glob("*.log")}
    assert {f"{stage}.log" for stage in ("produce", "ingest")} <= logs and not stale.exists()
    assert {f"live-{int(run['rate'])}.log" for run in doc["live"]} <= logs
    assert "(bulk mode)" in (out / "bench_logs" / "ingest.log").read_text()  # and it reconciled (above)

    with (out / "bench.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS
    assert {r["figure"] for r in rows} == FIGURES
    assert all(float(r["value"]) > 0 for r in rows if r["figure"] not in SIGNED)
    # the lake lived in the work folder; nothing of the checkout's data, MLflow store or reports changed
    assert (work / "lake" / "silver").is_dir()
    assert stamps() == before
