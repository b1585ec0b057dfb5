"""What the report stage hands its dashboard: the records :mod:`website_activity.stages.report.report` fills
and :mod:`website_activity.stages.report.dashboard` renders (so the dashboard does not import the report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.core.manifests import IngestSummary, ValidationGate

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class ModelInfo:
    """What the dashboard shows of the model: the runs, and the run it features."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] | None = None        # the champion's run, else the latest finished one
    experiment_id: str | None = None
    champion_version: str | None = None
    coefficients: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # roc_curve.png ... from the run
    note: str = ""


@dataclass(frozen=True)
class DashboardOptions:
    """The configuration's values the dashboard shows or is shaped by (``report.*``, the profile)."""

    top_pages: int          # report.top_pages: rows of the busiest pages table
    profile: str            # the configuration profile, in the page's footer
    ip_mode: str            # report.ip_mode: how the page says addresses were pseudonymised


@dataclass
class ReportData:
    """Everything the dashboard shows (the CSVs' frames and the run's figures)."""

    out: Path
    kpis: dict[str, Any]
    frames: dict[str, "pd.DataFrame"]
    funnel: list[dict[str, Any]]
    five_vs: list[dict[str, Any]]
    model: ModelInfo
    validation: ValidationGate | None      # latest.json (None: never validated)
    ingest: IngestSummary | None           # ingest.json (None: never ingested)
    quality: list[dict[str, str]]
    links: dict[str, str]
    generated_at: str
