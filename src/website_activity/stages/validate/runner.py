"""Run the suites on DataFrames: a :class:`ValidationReport` out (GX's in-memory context, or the
one given; no reading or writing of the lake)."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from website_activity.core.config import Settings
from website_activity.stages.validate.context import (DOCS_SITE, batch_definitions, ephemeral_context, save_checkpoints,
                                                      suite_rules)
from website_activity.stages.validate.outcomes import EXAMPLES, Outcome, ValidationReport, outcome
from website_activity.stages.validate.suites import SUITE_NAME, SUITES, quarantine_rate, suite_parameters

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

RUN_NAME = "make-validate"


def reconciliation_frame(spark: "SparkSession", silver_rows: int, quarantined_rows: int,
                         records_read: int | None = None, duplicates_removed: int = 0) -> "DataFrame":
    """The one row the reconciliation suite checks (``records_read`` None: not known, the
    equation's ``unaccounted`` column is null)."""
    unaccounted = None if records_read is None else records_read - silver_rows - quarantined_rows - duplicates_removed
    return spark.createDataFrame(
        [(records_read, silver_rows, quarantined_rows, duplicates_removed, unaccounted,
          quarantine_rate(silver_rows, quarantined_rows))],
        "records_read long, silver_rows long, quarantined_rows long, duplicates_removed long, "
        "unaccounted long, quarantine_rate double")


def validate_frames(frames: Mapping[str, "DataFrame"], settings: Settings, *, context: Any = None,
                    docs: bool = False, now: datetime | None = None) -> ValidationReport:
    """Run the generated suites on their DataFrames.

    Two passes per suite. The first (the saved checkpoint) asks only pass/fail: GX then folds
    the unexpected counts of all column checks into a few Spark jobs. Example values cost one
    more Spark job per expectation, so the second pass fetches counts and examples only for the
    expectations that failed and for those with ``mostly`` (their shares are worth reading
    even when they pass), and its results replace the first pass's in the stored result and
    the Data Docs. On 1M rows this halves the time of a passing run.

    Args:
        frames: ``{suite name: DataFrame}``: ``silver`` rows, and/or the one ``reconciliation``
            row (:func:`reconciliation_frame`).
        settings: Gives ``schema`` and ``validation``.
        context: The GX context to save suites and results in (default: an in-memory one).
        docs: Update the context's Data Docs site with the results.
        now: The validation's "now" (default: the current time).

    Returns:
        A :class:`ValidationReport`; it does not raise when expectations fail.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    start = time.monotonic()
    now = now or datetime.now(timezone.utc)
    context = context or ephemeral_context()
    unknown = set(frames) - set(SUITES)
    if unknown:
        raise ValueError(f"no suite named {', '.join(sorted(unknown))}")
    names = [n for n in SUITES if n in frames]
    rules = suite_rules(settings)
    saved = save_checkpoints(context, rules, names, docs)
    parameters = suite_parameters(rules, now)
    run_id = RunIdentifier(run_name=RUN_NAME, run_time=now)
    outcomes: list[Outcome] = []
    suites: dict[str, bool] = {}
    for name in names:
        result = saved[name].run(batch_parameters={"dataframe": frames[name]},
                                       expectation_parameters=parameters, run_id=run_id)
        ((key, validation),) = result.run_results.items()
        wanted = [r.expectation_config for r in validation.results
                  if not r.success or r.expectation_config.kwargs.get("mostly") is not None]
        if wanted:
            details = _details(frames[name], name, wanted, parameters)
            validation.results = [details.get(_result_key(r.expectation_config), r) for r in validation.results]
            context.validation_results_store.set(key, validation)
            if docs:
                context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[key])
        suites[name] = bool(validation.success)
        outcomes += [outcome(name, r) for r in validation.results]
    rows = frames[SUITE_NAME].count() if SUITE_NAME in frames else 0
    report = ValidationReport(success=all(suites.values()), rows=rows, outcomes=outcomes,
                              seconds=time.monotonic() - start, suites=suites)
    log.info("validation of %d rows: %d of %d expectations failed (%.1f s)", report.rows,
             len(report.failures), report.expectations, report.seconds)
    return report


def _details(df: "DataFrame", name: str, configs: list[Any], parameters: dict[str, str]) -> dict[str, Any]:
    """SUMMARY results (counts, percentages, example values) of some expectations, by
    :func:`_result_key`.

    Run in a throwaway in-memory context: this partial suite is not the project's.
    """
    import great_expectations as gx

    context = ephemeral_context()
    batch_definition = batch_definitions(context)[name]
    expectations = [c.to_domain_obj() for c in configs]
    for expectation in expectations:
        expectation.id = None  # it belongs to the project's suite; this is a copy
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
    result = definition.run(batch_parameters={"dataframe": df}, expectation_parameters=parameters,
                            result_format={"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES})
    return {_result_key(r.expectation_config): r for r in result.results}


def _result_key(config: Any) -> str:
    """What identifies an expectation in both passes (their contexts give other batch ids)."""
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    return json.dumps([config.type, kwargs, config.notes], sort_keys=True, default=str)


def validate_frame(df: "DataFrame", settings: Settings, **kwargs: Any) -> ValidationReport:
    """Run the ``silver`` suite on a DataFrame of silver rows (see :func:`validate_frames`)."""
    return validate_frames({SUITE_NAME: df}, settings, **kwargs)
