"""Validate: the Great Expectations quality gate on the lake, and the gate ``make train`` obeys.

Two suites, generated from the configuration (never written by hand):

``silver`` (from ``schema`` and ``validation``), on the whole silver table:

* the exact column set (the declared fields plus the lake columns ingest adds) and each
  column's Spark type; at least one row;
* not-null on every required field; values in set for every enum; ``event_id`` unique
  (replays must not double count);
* ids are UUIDs and ``ip_address`` is an IPv4 address (anchored regexes: Spark's ``rlike``
  matches substrings);
* click coordinates inside the device's viewport for clicks (one ``row_condition`` per device),
  ``-1`` for every other action;
* event times not before ``generator.start_time`` minus a margin and never in the future (the
  "now" of each run is a suite parameter, so the saved suite does not change from run to run);
* each device's share of events within bounds (``mostly=``: distribution sanity).

``reconciliation``, on one row of counts: the records ingest read (``data/_runs/ingest.json``)
equal the silver rows plus the quarantined rows (both counted in the lake now) plus the
duplicates ingest removed; the share of quarantined records is at most
``validation.max_quarantine_rate``. A lake that ingest did not write (no ``ingest.json``) has
no records-read count: the equation's column is null and GX skips it (logged as a warning).

Validation always covers the whole lake, not only the partitions new since the last run:
uniqueness of ``event_id`` is a property of the whole table (a replay lands in another
partition), and a million rows take well under a minute on ``local[2]``
(``make bench``).

Each suite runs in two passes (see :func:`validate_frames`): pass/fail for every expectation,
then counts and example values for the failed ones and those with ``mostly``. So the Data Docs
and ``data_quality.csv`` show counts and examples where they matter; a passing column check
without ``mostly`` has, by definition, no unexpected row (0 in the CSV, no count in the docs).

The suites, validation definitions and checkpoints are saved into the Great Expectations
project in ``paths.gx`` (committed; every run regenerates them, so they cannot drift from the
config). Each run stores its results in ``gx/uncommitted/`` (git-ignored), rebuilds the Data Docs
in ``<reports>/data_docs/`` (viewable offline, see :mod:`website_activity.data_docs`), writes
``<reports>/data_quality.csv`` and records the outcome and a fingerprint of the lake in
``paths.validation/latest.json``, which :func:`check_gate` reads before training.

:func:`validate_frames` is pure apart from GX's in-memory context (DataFrames in, a
:class:`ValidationReport` out) and unit-tested on inline DataFrames; :func:`run_validate` adds
the reading and writing.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from website_activity.catalog import (data_docs_index, ingest_summary_path, quality_csv_path,
                                      validation_gate_path)
from website_activity.config import Settings
from website_activity.errors import PipelineError, ValidationFailed, first_line
from website_activity.files import write_text
from website_activity.lake import lake_fingerprint, lake_versions, read_quarantine_count, read_silver
from website_activity.schema import (IPV4_REGEX, NO_COORDINATE, UUID_REGEX, field_names, required_fields,
                                     spark_type_names)

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SUITE_NAME = "silver"
RECONCILIATION_SUITE = "reconciliation"
SUITES = (SUITE_NAME, RECONCILIATION_SUITE)
DATASOURCE = "lake"
DOCS_SITE = "reports"
RUN_NAME = "make-validate"
NOW_PARAMETER = "now_plus_clock_skew"
# Columns ingest adds to every silver row (website_activity.ingest.split_valid), with their types.
LAKE_COLUMN_TYPES = {
    "topic": "StringType",
    "partition": "IntegerType",
    "offset": "LongType",
    "ingest_time": "TimestampType",
    "event_date": "DateType",
    "is_late": "BooleanType",
}
ID_FIELDS = ("event_id", "user_id", "session_id")
UNIQUE_FIELDS = ("event_id",)
EXAMPLES = 5  # unexpected values kept per failed expectation
SUMMARY_FAILURES = 5  # failures named in the one-line summary
CSV_HEADER = ("suite", "expectation", "column", "rule", "success", "unexpected_count",
              "unexpected_percent", "examples")


@dataclass
class Outcome:
    """The result of one expectation."""

    suite: str
    expectation: str
    column: str | None
    success: bool
    rule: str | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    observed: Any = None
    mostly: float | None = None
    error: str | None = None

    def describe(self) -> str:
        """One readable phrase: which expectation, on how many rows, with a few examples."""
        name = f"{self.expectation}({self.column})" if self.column else self.expectation
        if self.rule:
            name += f" [{self.rule}]"
        if self.error:
            return f"{name}: error {self.error}"
        if self.expectation == "expect_table_columns_to_match_set":
            return f"{name}: {', '.join(self.examples)}"
        if self.mostly is not None and self.unexpected_percent is not None:
            return (f"{name}: {100 - self.unexpected_percent:.1f}% of rows comply, "
                    f"at least {100 * self.mostly:g}% must")
        if self.unexpected_count is not None:
            unit = "row" if self.unexpected_count == 1 else "rows"
            values = list(dict.fromkeys(repr(v) for v in self.examples if v is not None))[:3]
            shown = f" (e.g. {', '.join(values)})" if values else ""
            return f"{name}: {self.unexpected_count} {unit}{shown}"
        return f"{name}: observed {self.observed!r}"


@dataclass
class ValidationReport:
    """The outcome of one validation run (one or both suites)."""

    success: bool
    rows: int
    outcomes: list[Outcome]
    seconds: float
    suites: dict[str, bool] = field(default_factory=dict)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def expectations(self) -> int:
        return len(self.outcomes)

    def summary(self) -> str:
        """One line: how many expectations failed, and the first few of them."""
        if self.success:
            return f"all {self.expectations} expectations passed on {self.rows} rows"
        failures = self.failures
        shown = "; ".join(f.describe() for f in failures[:SUMMARY_FAILURES])
        more = len(failures) - SUMMARY_FAILURES
        if more > 0:
            shown += f"; and {more} more"
        return f"{len(failures)} of {self.expectations} expectations failed: {shown}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "passed" if self.success else "failed",
            "rows": self.rows,
            "expectations": self.expectations,
            "seconds": round(self.seconds, 3),
            "suites": {name: "passed" if ok else "failed" for name, ok in self.suites.items()},
            "failures": [asdict(f) for f in self.failures],
        }


# -- the suites, from the configuration -----------------------------------------------------
def earliest_event_time(settings: Settings) -> datetime:
    """``generator.start_time`` minus ``validation.event_time_margin_h``, in UTC."""
    start = datetime.fromisoformat(settings["generator"]["start_time"])
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return (start - timedelta(hours=settings["validation"]["event_time_margin_h"])).astimezone(timezone.utc)


def suite_parameters(settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """The run-time values of the suites' parameters: the latest event time allowed."""
    now = now or datetime.now(timezone.utc)
    latest = now + timedelta(seconds=settings["validation"]["clock_skew_s"])
    return {NOW_PARAMETER: latest.astimezone(timezone.utc).isoformat()}


def _suite(name: str, expectations: list[Any]) -> "ExpectationSuite":
    import great_expectations as gx

    # Built in one go: suite.add_expectation() needs an active data context, and the
    # constructor logs and drops an invalid expectation instead of raising.
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    if len(suite.expectations) != len(expectations):
        raise PipelineError(f"validation suite {name}: {len(expectations) - len(suite.expectations)} "
                            "generated expectations were rejected by Great Expectations")
    return suite


def build_suite(settings: Settings) -> "ExpectationSuite":
    """Generate the ``silver`` suite from ``schema`` and ``validation``.

    Args:
        settings: The merged configuration.

    Returns:
        An ``ExpectationSuite`` named ``silver`` (not yet attached to a data context).
    """
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    fields = settings.schema_fields
    names = field_names(fields)
    types = {**spark_type_names(fields), **LAKE_COLUMN_TYPES}
    enums = settings["schema"]["enums"]
    rules = settings["validation"]

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

    coordinates = ("click_coordinates_x", "click_coordinates_y")
    if {"action_type", "device_type", *coordinates} <= set(names):
        click = Column("action_type") == "click"
        for device, (width, height) in rules["viewports"].items():
            for column, size in zip(coordinates, (width, height)):
                expectations.append(gxe.ExpectColumnValuesToBeBetween(
                    column=column, min_value=0, max_value=size - 1,
                    row_condition=click & (Column("device_type") == device),
                    notes=f"{device} clicks inside {width}x{height}"))
        for column in coordinates:
            expectations.append(gxe.ExpectColumnValuesToBeInSet(
                column=column, value_set=[NO_COORDINATE], row_condition=Column("action_type") != "click",
                notes=f"{NO_COORDINATE} unless a click"))

    if "timestamp" in names:
        earliest = earliest_event_time(settings)
        expectations += [
            gxe.ExpectColumnValuesToBeBetween(
                column="timestamp", min_value=earliest.isoformat(),
                notes=f"not before {earliest:%Y-%m-%d %H:%M} UTC"),
            gxe.ExpectColumnValuesToBeBetween(
                column="timestamp", max_value={"$PARAMETER": NOW_PARAMETER},
                notes="never in the future"),
        ]

    if "device_type" in names:
        # A device's share of events within [low, high]: at least `low` of the rows are this
        # device, and at least 1 - high of them are another one.
        for device, (low, high) in rules["device_share"].items():
            if low > 0:
                expectations.append(gxe.ExpectColumnValuesToBeInSet(
                    column="device_type", value_set=[device], mostly=low,
                    notes=f"{device} share >= {low:g}"))
            if high < 1:
                expectations.append(gxe.ExpectColumnValuesToNotBeInSet(
                    column="device_type", value_set=[device], mostly=round(1 - high, 6),
                    notes=f"{device} share <= {high:g}"))
    return _suite(SUITE_NAME, expectations)


def build_reconciliation_suite(settings: Settings) -> "ExpectationSuite":
    """Generate the ``reconciliation`` suite: records read = silver + quarantined + duplicates
    removed, and the quarantine rate within its bound."""
    import great_expectations.expectations as gxe

    limit = settings["validation"]["max_quarantine_rate"]
    return _suite(RECONCILIATION_SUITE, [
        gxe.ExpectTableRowCountToEqual(value=1),
        gxe.ExpectColumnValuesToBeBetween(
            column="unaccounted", min_value=0, max_value=0,
            notes="records_read - silver - quarantined - duplicates_removed == 0"),
        gxe.ExpectColumnValuesToBeBetween(
            column="quarantine_rate", min_value=0.0, max_value=limit,
            notes=f"quarantined / (silver + quarantined) <= {limit:g}"),
    ])


def build_suites(settings: Settings) -> dict[str, "ExpectationSuite"]:
    return {SUITE_NAME: build_suite(settings), RECONCILIATION_SUITE: build_reconciliation_suite(settings)}


def quarantine_rate(silver_rows: int, quarantined_rows: int) -> float:
    """Quarantined records over all records of the lake (0.0 for an empty lake)."""
    total = silver_rows + quarantined_rows
    return quarantined_rows / total if total else 0.0


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


def ingest_counts(settings: Settings) -> dict[str, Any] | None:
    """``records_read`` and ``duplicates_removed`` from ingest's summary (None: no summary)."""
    path = ingest_summary_path(settings)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        return {"records_read": int(summary["records_read"]),
                "duplicates_removed": int(summary["duplicates_removed"])}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"cannot read {path} ({exc.__class__.__name__}): run make ingest again") from exc


# -- running them ---------------------------------------------------------------------------
def _quiet(context: Any) -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _quiet_gx_logger() -> None:
    # This GX module pins its own logger at INFO (one line per context about a temp docs
    # folder): let it inherit from "great_expectations" again, as the entry point configured it.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.NOTSET)


def ephemeral_context() -> Any:
    """An in-memory GX context with its progress bars off (for tests and dry runs)."""
    import great_expectations as gx

    _quiet_gx_logger()
    return _quiet(gx.get_context(mode="ephemeral"))


def file_context(settings: Settings) -> Any:
    """The GX project in ``paths.gx`` (created on first use), with the Data Docs site in
    ``<reports>/data_docs``.

    The site is configured in memory only: its folder depends on ``paths.reports``, and the
    committed ``great_expectations.yml`` must not change from one machine (or test) to another.
    """
    import great_expectations as gx

    from website_activity.data_docs import site_config

    _quiet_gx_logger()
    root = settings.path("gx")
    try:
        context = gx.get_context(mode="file", context_root_dir=str(root))
    except Exception as exc:  # a broken great_expectations.yml: one line, not a GX trace
        raise PipelineError(f"cannot open the Great Expectations project in {root}: "
                            f"{first_line(exc)}") from exc
    _batch_definitions(context)  # may save great_expectations.yml: before the site is set
    context.variables.data_docs_sites = {DOCS_SITE: site_config(settings.path("reports") / "data_docs")}
    return _quiet(context)


def _batch_definitions(context: Any) -> dict[str, Any]:
    """One Spark dataframe asset per suite, each with a whole-dataframe batch definition.

    Looked up before being added, so that their ids (in great_expectations.yml) stay put.
    """
    try:
        source = context.data_sources.get(DATASOURCE)
    except KeyError:
        source = context.data_sources.add_spark(name=DATASOURCE)
    definitions = {}
    for name in SUITES:
        try:
            asset = source.get_asset(name)
        except LookupError:
            asset = source.add_dataframe_asset(name=name)
        try:
            definitions[name] = asset.get_batch_definition("whole")
        except KeyError:
            definitions[name] = asset.add_batch_definition_whole_dataframe(name="whole")
    return definitions


def _expectation_key(expectation: Any) -> str:
    config = expectation.configuration.to_json_dict()
    config.pop("id", None)
    return json.dumps(config, sort_keys=True, default=str)


def _save_suite(context: Any, suite: "ExpectationSuite") -> "ExpectationSuite":
    """Add or update a suite, keeping the ids of the expectations that did not change.

    GX's ``suites.add_or_update`` means to keep them, but compares expectations ids included,
    so every run would rewrite every id in the committed JSON.
    """
    from great_expectations.exceptions import DataContextError

    try:
        existing = context.suites.get(suite.name)
    except DataContextError:
        existing = None
    if existing is not None:
        ids = {_expectation_key(e): e.id for e in existing.expectations}
        for expectation in suite.expectations:
            expectation.id = ids.get(_expectation_key(expectation))
    return context.suites.add_or_update(suite)


def _checkpoints(context: Any, settings: Settings, names: list[str], docs: bool) -> dict[str, Any]:
    """Save the suites, validation definitions and one checkpoint per suite (add or update)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    suites = build_suites(settings)
    batch_definitions = _batch_definitions(context)
    actions = [UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])] if docs else []
    checkpoints = {}
    for name in names:
        suite = _save_suite(context, suites[name])
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch_definitions[name], suite=suite))
        checkpoints[name] = context.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[definition], actions=actions,
            result_format={"result_format": "BOOLEAN_ONLY"}))
    return checkpoints


def save_project(settings: Settings) -> Path:
    """Write the generated suites, validation definitions and checkpoints into ``paths.gx``.

    ``make validate`` does this on every run; on its own it needs no data, so a change of the
    rules in ``conf/base.yaml`` can be reviewed as a diff of ``gx/``. (GX starts a local Spark
    session once, when it first creates the project's Spark data source.)

    Returns:
        The GX project folder.
    """
    _checkpoints(file_context(settings), settings, list(SUITES), docs=True)
    return settings.path("gx")


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
    checkpoints = _checkpoints(context, settings, names, docs)
    parameters = suite_parameters(settings, now)
    run_id = RunIdentifier(run_name=RUN_NAME, run_time=now)
    outcomes: list[Outcome] = []
    suites: dict[str, bool] = {}
    for name in names:
        result = checkpoints[name].run(batch_parameters={"dataframe": frames[name]},
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
        outcomes += [_outcome(name, r) for r in validation.results]
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
    batch_definition = _batch_definitions(context)[name]
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


def _outcome(suite: str, r: Any) -> Outcome:
    config = r.expectation_config
    kind, kwargs = config.type, config.kwargs
    notes = config.notes
    rule = " ".join(notes) if isinstance(notes, list) else notes
    details = r.result or {}
    base = dict(suite=suite, expectation=kind, column=kwargs.get("column"), success=bool(r.success),
                rule=rule or None, mostly=kwargs.get("mostly"))
    error = _exception_message(r.exception_info)
    if error:
        return Outcome(**base, error=error)
    if kind == "expect_table_columns_to_match_set":
        mismatched = (details.get("details") or {}).get("mismatched") or {}
        unexpected = sorted(mismatched.get("unexpected") or [])
        missing = sorted(mismatched.get("missing") or [])
        examples = [f"unexpected column {c}" for c in unexpected] + [f"missing column {c}" for c in missing]
        return Outcome(**base, unexpected_count=len(examples), examples=examples,
                       observed=_jsonable(details.get("observed_value")))
    count = details.get("unexpected_count")
    percent = details.get("unexpected_percent")
    if count is None and r.success and base["mostly"] is None and _is_column_map(kind):
        # Counts were not fetched (first pass only), but without `mostly` a column check
        # passes only when no row is unexpected.
        count, percent = 0, 0.0
    return Outcome(
        **base,
        unexpected_count=None if count is None else int(count),
        unexpected_percent=None if percent is None else round(float(percent), 4),
        examples=_jsonable(details.get("partial_unexpected_list") or [])[:EXAMPLES] if not r.success else [],
        observed=_jsonable(details.get("observed_value")),
    )


def _is_column_map(kind: str) -> bool:
    from great_expectations.expectations.expectation import ColumnMapExpectation
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return issubclass(get_expectation_impl(kind), ColumnMapExpectation)
    except Exception:  # an expectation type GX does not know: say nothing
        return False


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


# -- outputs --------------------------------------------------------------------------------


def write_report(report: ValidationReport, path: Path, **extra: Any) -> None:
    """Write the report as JSON (with ``extra`` keys such as the lake's fingerprint)."""
    doc = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), **report.to_dict(), **extra}
    write_text(path, json.dumps(doc, indent=2, default=str) + "\n")


def write_quality_csv(report: ValidationReport, path: Path) -> None:
    """One row per expectation: suite, expectation, column, rule, success, unexpected count and
    percent, and a few example values (``; ``-separated)."""
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for o in report.outcomes:
        writer.writerow([
            o.suite, o.expectation, o.column or "", o.rule or "", str(o.success).lower(),
            "" if o.unexpected_count is None else o.unexpected_count,
            "" if o.unexpected_percent is None else f"{o.unexpected_percent:.4f}",
            "; ".join(str(v) for v in o.examples),
        ])
    write_text(path, out.getvalue())






latest_path = validation_gate_path


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
    out = latest_path(settings)
    write_report(report, out, fingerprint=fingerprint, silver_version=versions["silver"],
                 quarantine={"rows": quarantined, "rate": round(quarantine_rate(silver_rows, quarantined), 6)},
                 ingest=counts,
                 data_docs=str(data_docs_index(settings)), summary_csv=str(quality_csv_path(settings)))
    if not report.success:
        raise ValidationFailed(f"{report.summary()} (details in {out})", report)
    return report
