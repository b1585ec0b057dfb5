"""The two validation suites, generated from the configuration's rules (pure: no data, no I/O).

The functions receive :class:`SuiteRules`, the values of ``schema``, ``validation`` and
``generator.start_time`` they read, not the whole configuration
(:func:`website_activity.stages.validate.run.suite_rules` builds them from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from website_activity.core.errors import PipelineError
from website_activity.core.schema import (IPV4_REGEX, NO_COORDINATE, UUID_REGEX, field_names, required_fields,
                                          spark_type_names)

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

SUITE_NAME = "silver"
RECONCILIATION_SUITE = "reconciliation"
SUITES = (SUITE_NAME, RECONCILIATION_SUITE)
NOW_PARAMETER = "now_plus_clock_skew"
# Columns ingest adds to every silver row (website_activity.stages.ingest.split_valid), with their types.
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


@dataclass(frozen=True)
class SuiteRules:
    """What the suites are generated from: the schema's fields and enums, and the rules of
    ``validation`` (with ``generator.start_time``, the earliest event time's anchor)."""

    fields: Sequence[Mapping[str, Any]]                    # schema.fields (settings.schema_fields)
    enums: Mapping[str, Sequence[Any]]                     # schema.enums
    viewports: Mapping[str, Sequence[int]]                 # validation.viewports: device -> (width, height)
    device_share: Mapping[str, Sequence[float]]            # validation.device_share: device -> (low, high)
    start_time: str                                        # generator.start_time (ISO-8601)
    event_time_margin_h: float                             # validation.event_time_margin_h
    clock_skew_s: float                                    # validation.clock_skew_s
    max_quarantine_rate: float                             # validation.max_quarantine_rate


def earliest_event_time(rules: SuiteRules) -> datetime:
    """``generator.start_time`` minus ``validation.event_time_margin_h``, in UTC."""
    start = datetime.fromisoformat(rules.start_time)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return (start - timedelta(hours=rules.event_time_margin_h)).astimezone(timezone.utc)


def suite_parameters(rules: SuiteRules, now: datetime | None = None) -> dict[str, str]:
    """The run-time values of the suites' parameters: the latest event time allowed."""
    now = now or datetime.now(timezone.utc)
    latest = now + timedelta(seconds=rules.clock_skew_s)
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


def build_suite(rules: SuiteRules) -> "ExpectationSuite":
    """Generate the ``silver`` suite from ``schema`` and ``validation``.

    Args:
        rules: The configuration's values the suite is made of.

    Returns:
        An ``ExpectationSuite`` named ``silver`` (not yet attached to a data context).
    """
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    fields = list(rules.fields)
    names = field_names(fields)
    types = {**spark_type_names(fields), **LAKE_COLUMN_TYPES}
    enums = rules.enums

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
        for device, (width, height) in rules.viewports.items():
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
        earliest = earliest_event_time(rules)
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
        for device, (low, high) in rules.device_share.items():
            if low > 0:
                expectations.append(gxe.ExpectColumnValuesToBeInSet(
                    column="device_type", value_set=[device], mostly=low,
                    notes=f"{device} share >= {low:g}"))
            if high < 1:
                expectations.append(gxe.ExpectColumnValuesToNotBeInSet(
                    column="device_type", value_set=[device], mostly=round(1 - high, 6),
                    notes=f"{device} share <= {high:g}"))
    return _suite(SUITE_NAME, expectations)


def build_reconciliation_suite(rules: SuiteRules) -> "ExpectationSuite":
    """Generate the ``reconciliation`` suite: records read = silver + quarantined + duplicates
    removed, and the quarantine rate within its bound."""
    import great_expectations.expectations as gxe

    limit = rules.max_quarantine_rate
    return _suite(RECONCILIATION_SUITE, [
        gxe.ExpectTableRowCountToEqual(value=1),
        gxe.ExpectColumnValuesToBeBetween(
            column="unaccounted", min_value=0, max_value=0,
            notes="records_read - silver - quarantined - duplicates_removed == 0"),
        gxe.ExpectColumnValuesToBeBetween(
            column="quarantine_rate", min_value=0.0, max_value=limit,
            notes=f"quarantined / (silver + quarantined) <= {limit:g}"),
    ])


def build_suites(rules: SuiteRules) -> dict[str, "ExpectationSuite"]:
    return {SUITE_NAME: build_suite(rules), RECONCILIATION_SUITE: build_reconciliation_suite(rules)}


def quarantine_rate(silver_rows: int, quarantined_rows: int) -> float:
    """Quarantined records over all records of the lake (0.0 for an empty lake)."""
    total = silver_rows + quarantined_rows
    return quarantined_rows / total if total else 0.0
