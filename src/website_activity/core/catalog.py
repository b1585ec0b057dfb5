"""Where every stage's output lives: the one place each path between stages is built.

Stages meet through these files (a manifest one writes and the next reads, each a typed record
of :mod:`website_activity.core.manifests`), so each path is defined here once, from ``paths.*`` in the configuration, instead of in every
reader. The lake's tables are ``settings.path("bronze")`` and so on (their folders are the configuration itself).
Imports nothing but the configuration and the records (whose ``FILE`` names the file): no engine,
no other stage.
"""

from __future__ import annotations

from pathlib import Path

from website_activity.core.config import Settings
from website_activity.core.manifests import ChampionCard, IngestSummary, ModelMetrics, ProduceManifest, ValidationGate


# -- produce ------------------------------------------------------------------------------------
def produce_manifest_path(settings: Settings) -> Path:
    """``produce.json``: what the producers sent (events, records, faults by kind, seconds)."""
    return settings.path("runs") / ProduceManifest.FILE


def ground_truth_path(settings: Settings, topic: str) -> Path:
    """The generator's true session parameters of one topic (Parquet), which train's oracle reads."""
    return settings.path("ground_truth") / f"{topic}.parquet"


# -- ingest -------------------------------------------------------------------------------------
def ingest_summary_path(settings: Settings) -> Path:
    """``ingest.json``: the last ingest run's reconciliation, file sizes and latency."""
    return settings.path("runs") / IngestSummary.FILE


def ingest_checkpoint_dir(settings: Settings) -> Path:
    """The streaming query's checkpoint (Spark's offsets and commits, and Delta's app id)."""
    return settings.path("checkpoints") / "ingest"


def ingest_ledger_dir(settings: Settings) -> Path:
    """One JSON file per completed micro-batch (its counts), written before Spark's checkpoint commit."""
    return settings.path("runs") / "ingest_batches"


# -- validate -----------------------------------------------------------------------------------
def validation_gate_path(settings: Settings) -> Path:
    """``latest.json``: the last validation's outcome and the silver version it judged (train's gate)."""
    return settings.path("validation") / ValidationGate.FILE


def quality_csv_path(settings: Settings) -> Path:
    return settings.path("reports") / "data_quality.csv"


def data_docs_index(settings: Settings) -> Path:
    return settings.path("reports") / "data_docs" / "index.html"


# -- train and score ----------------------------------------------------------------------------
def model_metrics_path(settings: Settings) -> Path:
    """``metrics.json``: the last training run's id, version, params, metrics and promotion."""
    return settings.path("models") / ModelMetrics.FILE


def champion_dir(settings: Settings) -> Path:
    """The champion exported for readers outside MLflow: ``model/`` and ``card.json``."""
    return settings.path("models") / "champion"


def champion_card_path(settings: Settings) -> Path:
    """``card.json``: which registered version (name, version, run id, URI) the export is."""
    return champion_dir(settings) / ChampionCard.FILE


def predictions_csv_path(settings: Settings) -> Path:
    return settings.path("reports") / "predictions.csv"
