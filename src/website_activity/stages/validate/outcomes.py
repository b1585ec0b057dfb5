"""Validation results as plain records: one :class:`Outcome` per expectation, the
:class:`ValidationReport`, and the documents made from it (pure: no I/O)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from website_activity.core.manifests import ValidationGate

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


def outcome(suite: str, r: Any) -> Outcome:
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


def gate_record(report: ValidationReport, timestamp: datetime, **extra: Any) -> ValidationGate:
    """The report as ``latest.json``'s record (with ``extra`` keys such as the lake's fingerprint)."""
    return ValidationGate(timestamp=timestamp.isoformat(timespec="seconds"), **report.to_dict(), **extra)


def quality_csv(report: ValidationReport) -> str:
    """One row per expectation: suite, expectation, column, rule, success, unexpected count and
    percent, and a few example values (``; ``-separated)."""
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
    return out.getvalue()
