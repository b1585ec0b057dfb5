"""The validate stage's I/O edge: read the lake and ingest's counts, run the suites, write the
Data Docs, ``data_quality.csv`` and ``latest.json``."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.adapters.files import read_manifest, write_manifest, write_text
from website_activity.adapters.lake import lake_fingerprint, lake_versions, read_quarantine_count, read_silver
from website_activity.core.catalog import data_docs_index, ingest_summary_path, quality_csv_path, validation_gate_path
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, ValidationFailed
from website_activity.core.manifests import IngestSummary
from website_activity.stages.validate.context import file_context
from website_activity.stages.validate.outcomes import ValidationReport, gate_record, quality_csv
from website_activity.stages.validate.runner import reconciliation_frame, validate_frames
from website_activity.stages.validate.suites import RECONCILIATION_SUITE, SUITE_NAME, quarantine_rate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def ingest_counts(settings: Settings) -> dict[str, Any] | None:
    """``records_read`` and ``duplicates_removed`` from ingest's summary (None: no summary).

    Raises:
        PipelineError: The summary is unreadable, lacks a count, or holds one that is not a number.
    """
    path = ingest_summary_path(settings)
    summary = read_manifest(path, IngestSummary)
    if summary is None:
        return None
    try:
        return {"records_read": int(summary.records_read), "duplicates_removed": int(summary.duplicates_removed)}
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"cannot read {path} ({exc.__class__.__name__}): run make ingest again") from exc


def write_report(report: ValidationReport, path: Path, **extra: Any) -> None:
    """Write the report as ``latest.json`` (with ``extra`` keys such as the lake's fingerprint)."""
    write_manifest(path, gate_record(report, datetime.now(timezone.utc), **extra))


def write_quality_csv(report: ValidationReport, path: Path) -> None:
    """Write ``data_quality.csv``: one row per expectation (see :func:`quality_csv`)."""
    write_text(path, quality_csv(report))


def run_validate(spark: "SparkSession", settings: Settings) -> ValidationReport:
    """Validate the lake and record the outcome.

    Reads the whole silver table and the quarantine's row count, runs both suites through the
    GX project in ``paths.gx``, updates the Data Docs and ``data_quality.csv`` in
    ``paths.reports``, and writes ``paths.validation/latest.json`` with the lake's fingerprint.

    Args:
        spark: The session to read the lake with.
        settings: The merged configuration.

    Returns:
        The report, when every expectation passed.

    Raises:
        PipelineError: Silver is missing or empty, or the GX project cannot be opened.
        ValidationFailed: At least one expectation failed (everything above is written first);
            its ``report`` attribute holds the :class:`ValidationReport`.
    """
    fingerprint = lake_fingerprint(settings)  # before reading: a later change makes it stale
    versions = lake_versions(settings)  # the versions validated, read as of them (time travel)
    # Not cached: GX's jobs each read a column or two, and Parquet serves those faster than
    # Spark can first materialise every column in memory (measured on 1M rows, local[2]).
    silver = read_silver(spark, settings, versions["silver"])
    quarantined = read_quarantine_count(spark, settings, versions["quarantine"])
    silver_rows = silver.count()  # from Parquet footers: cheap
    context = file_context(settings)
    counts = ingest_counts(settings)
    if counts is None:
        log.warning("no ingest summary (%s): records read = silver + quarantined + duplicates is not checked",
                    ingest_summary_path(settings))
    frames = {SUITE_NAME: silver,
              RECONCILIATION_SUITE: reconciliation_frame(spark, silver_rows, quarantined, **(counts or {}))}
    report = validate_frames(frames, settings, context=context, docs=True)
    write_quality_csv(report, quality_csv_path(settings))
    out = validation_gate_path(settings)
    write_report(report, out, fingerprint=fingerprint, silver_version=versions["silver"],
                 quarantine={"rows": quarantined, "rate": round(quarantine_rate(silver_rows, quarantined), 6)},
                 ingest=counts,
                 data_docs=str(data_docs_index(settings)), summary_csv=str(quality_csv_path(settings)))
    if not report.success:
        raise ValidationFailed(f"{report.summary()} (details in {out})", report)
    return report
