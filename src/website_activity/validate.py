"""Validate: the Great Expectations quality gate on the silver table.

The suite is generated from the configuration (``schema.fields`` and ``schema.enums``), so a
field added to ``conf/base.yaml`` is checked without touching this module:

* the exact column set: the declared fields plus the lake columns ingest adds;
* each column's Spark type;
* not-null on every required field;
* values in set for every enum;
* ``event_id`` unique (replays must not double count);
* at least one row;
* ids are UUIDs and ``ip_address`` is an IPv4 address (anchored regexes: Spark's ``rlike``
  matches substrings).

:func:`validate_frame` is pure (a DataFrame in, a :class:`ValidationReport` out) and unit-tested
on inline DataFrames; :func:`run_validate` reads silver and writes ``latest.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.config import Settings
from website_activity.errors import PipelineError, ValidationFailed
from website_activity.lake import read_silver
from website_activity.schema import field_names, required_fields, spark_type_names

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite, ExpectationSuiteValidationResult
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SUITE_NAME = "silver"
# Columns ingest adds to every silver row (website_activity.ingest.split_valid), with their types.
LAKE_COLUMN_TYPES = {
    "topic": "StringType",
    "partition": "IntegerType",
    "offset": "LongType",
    "ingest_time": "TimestampType",
    "event_date": "DateType",
}
ID_FIELDS = ("event_id", "user_id", "session_id")
UNIQUE_FIELDS = ("event_id",)
UUID_REGEX = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_REGEX = rf"^({_OCTET}\.){{3}}{_OCTET}$"
EXAMPLES = 5  # unexpected values kept per failed expectation
SUMMARY_FAILURES = 5  # failures named in the one-line summary


@dataclass
class Failure:
    """One failed expectation."""

    expectation: str
    column: str | None
    unexpected_count: int | None = None
    examples: list[Any] = field(default_factory=list)
    observed: Any = None
    error: str | None = None

    def describe(self) -> str:
        name = f"{self.expectation}({self.column})" if self.column else self.expectation
        if self.error:
            return f"{name}: error {self.error}"
        if self.expectation == "expect_table_columns_to_match_set":
            return f"{name}: {', '.join(self.examples)}"
        if self.unexpected_count is not None:
            unit = "row" if self.unexpected_count == 1 else "rows"
            values = list(dict.fromkeys(repr(v) for v in self.examples if v is not None))[:3]
            shown = f" (e.g. {', '.join(values)})" if values else ""
            return f"{name}: {self.unexpected_count} {unit}{shown}"
        return f"{name}: observed {self.observed!r}"


@dataclass
class ValidationReport:
    """The outcome of one validation run."""

    success: bool
    rows: int
    expectations: int
    failures: list[Failure]
    seconds: float

    def summary(self) -> str:
        """One line: how many expectations failed, and the first few of them."""
        if self.success:
            return f"all {self.expectations} expectations passed on {self.rows} rows"
        shown = "; ".join(f.describe() for f in self.failures[:SUMMARY_FAILURES])
        more = len(self.failures) - SUMMARY_FAILURES
        if more > 0:
            shown += f"; and {more} more"
        return f"{len(self.failures)} of {self.expectations} expectations failed: {shown}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "passed" if self.success else "failed",
            "rows": self.rows,
            "expectations": self.expectations,
            "seconds": round(self.seconds, 3),
            "failures": [asdict(f) for f in self.failures],
        }


def build_suite(settings: Settings) -> "ExpectationSuite":
    """Generate the silver suite from ``schema.fields`` and ``schema.enums``.

    Args:
        settings: The merged configuration.

    Returns:
        An ``ExpectationSuite`` named ``silver`` (not yet attached to a data context).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    fields = settings.schema_fields
    names = field_names(fields)
    types = {**spark_type_names(fields), **LAKE_COLUMN_TYPES}
    enums = settings["schema"]["enums"]

    expectations: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(types), exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]
    expectations += [gxe.ExpectColumnValuesToBeOfType(column=c, type_=t) for c, t in types.items()]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in required_fields(fields)]
    expectations += [gxe.ExpectColumnValuesToBeInSet(column=c, value_set=list(v)) for c, v in enums.items()]
    expectations += [gxe.ExpectColumnValuesToBeUnique(column=c) for c in UNIQUE_FIELDS if c in names]
    # Regexes skip nulls: the ids and the address are required, so not-null covers them.
    expectations += [gxe.ExpectColumnValuesToMatchRegex(column=c, regex=UUID_REGEX)
                     for c in ID_FIELDS if c in names]
    if "ip_address" in names:
        expectations.append(gxe.ExpectColumnValuesToMatchRegex(column="ip_address", regex=IPV4_REGEX))
    # Built in one go: suite.add_expectation() needs an active data context, and the
    # constructor logs and drops an invalid expectation instead of raising.
    suite = gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)
    if len(suite.expectations) != len(expectations):
        raise PipelineError(f"validation suite: {len(expectations) - len(suite.expectations)} "
                            "generated expectations were rejected by Great Expectations")
    return suite


def _context():
    """An in-memory GX context with its progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # This GX module pins its own logger at INFO (one line per context about a temp docs
    # folder): let it inherit from "great_expectations" again, as the entry point configured it.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.NOTSET)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def validate_frame(df: "DataFrame", settings: Settings) -> ValidationReport:
    """Run the generated suite on a silver DataFrame.

    Args:
        df: Rows with the silver columns.
        settings: Gives ``schema.fields`` and ``schema.enums``.

    Returns:
        A :class:`ValidationReport`; it does not raise when expectations fail.
    """
    import great_expectations as gx

    start = time.monotonic()
    context = _context()
    batch_definition = (
        context.data_sources.add_or_update_spark(name="lake")
        .add_dataframe_asset(name=SUITE_NAME)
        .add_batch_definition_whole_dataframe(name="whole")
    )

    def run(suite: "ExpectationSuite", result_format: dict[str, Any]) -> "ExpectationSuiteValidationResult":
        definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(
            name=suite.name, data=batch_definition, suite=context.suites.add_or_update(suite)))
        return definition.run(batch_parameters={"dataframe": df}, result_format=result_format)

    # Pass 1 asks only pass/fail: GX then folds the unexpected counts of all column checks into
    # a few Spark jobs. Example values cost one Spark job per expectation, so pass 2 fetches
    # them for the failed expectations only.
    suite = build_suite(settings)
    verdict = run(suite, {"result_format": "BOOLEAN_ONLY"})
    failures: list[Failure] = []
    if not verdict.success:
        failed = [r.expectation_config for r in verdict.results if not r.success]
        details = run(gx.ExpectationSuite(name=f"{SUITE_NAME}-failures", expectations=failed),
                      {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES})
        failures = [_failure(r.expectation_config.type, r.expectation_config.kwargs.get("column"),
                             r.result or {}, r.exception_info)
                    for r in details.results if not r.success]
    report = ValidationReport(success=bool(verdict.success), rows=df.count(),
                              expectations=len(verdict.results), failures=failures,
                              seconds=time.monotonic() - start)
    log.info("validation of %d rows: %d of %d expectations failed (%.1f s)", report.rows,
             len(report.failures), report.expectations, report.seconds)
    return report


def _failure(kind: str, column: str | None, details: dict[str, Any], exception_info: Any) -> Failure:
    error = _exception_message(exception_info)
    if error:
        return Failure(kind, column, error=error)
    if kind == "expect_table_columns_to_match_set":
        mismatched = (details.get("details") or {}).get("mismatched") or {}
        unexpected = sorted(mismatched.get("unexpected") or [])
        missing = sorted(mismatched.get("missing") or [])
        examples = [f"unexpected column {c}" for c in unexpected] + [f"missing column {c}" for c in missing]
        return Failure(kind, column, len(examples), examples, observed=details.get("observed_value"))
    count = details.get("unexpected_count")
    return Failure(
        kind, column,
        unexpected_count=None if count is None else int(count),
        examples=_jsonable(details.get("partial_unexpected_list") or [])[:EXAMPLES],
        observed=_jsonable(details.get("observed_value")),
    )


def _exception_message(info: Any) -> str | None:
    """GX catches errors per expectation (e.g. a missing column): keep the first line."""
    if not info:
        return None
    infos = info.values() if isinstance(info, dict) and "raised_exception" not in info else [info]
    for item in infos:
        item = item.to_json_dict() if hasattr(item, "to_json_dict") else item
        if isinstance(item, dict) and item.get("raised_exception"):
            message = str(item.get("exception_message") or "exception").strip().splitlines()
            return (message[0] if message else "exception")[:200]
    return None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_report(report: ValidationReport, path: Path) -> None:
    """Write the report as JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), **report.to_dict()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_validate(spark: "SparkSession", settings: Settings) -> ValidationReport:
    """Validate the silver table and record the outcome in ``paths.validation/latest.json``.

    Args:
        spark: The session to read silver with.
        settings: The merged configuration.

    Returns:
        The report, when every expectation passed.

    Raises:
        PipelineError: Silver is missing or empty.
        ValidationFailed: At least one expectation failed (``latest.json`` is written first).
    """
    df = read_silver(spark, settings)
    report = validate_frame(df, settings)
    out = settings.path("validation") / "latest.json"
    write_report(report, out)
    if not report.success:
        raise ValidationFailed(f"{report.summary()} (details in {out})")
    return report
