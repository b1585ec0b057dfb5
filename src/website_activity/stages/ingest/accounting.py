"""Ingest's bookkeeping, pure Python: a batch's counts, the watermark, latency, reconciliation.

Nothing here reads or writes: the I/O module (:mod:`website_activity.stages.ingest.run`) hands
these functions the ledger's entries and the tables' statistics, and writes what they return.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

@dataclass(slots=True)
class BatchStats:
    """One micro-batch's counts, as its ledger entry keeps them (slots: a misspelt field is an
    error, not a new attribute the ledger would miss)."""

    batch_id: int
    records_read: int
    silver: int
    quarantined: int
    duplicates_removed: int
    quarantine_by_reason: dict[str, int]
    max_event_time: dict[str, str]
    watermark: dict[str, str]
    ingest_time: str
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step: where a batch's time goes
    # valid records by latency, Kafka append -> silver commit, in LATENCY_BUCKET_MS steps ({"1200": n})
    latency_hist: dict[str, int] = field(default_factory=dict)
    # spans [start, end) of gold windows this batch and earlier ones left to the next gold update
    # (empty: gold holds every window so far), and the ingest time of the oldest of those batches
    gold_pending: list[list[str]] = field(default_factory=list)
    gold_since: str | None = None
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "replayed"}


def watermarks(previous: Mapping[str, Any] | None, delay_s: float) -> tuple[dict[str, str], dict[str, str]]:
    """(watermark per topic, latest event time per topic so far), from the ledger entry of the
    batch before. Per topic: each producer's clock is its own, so a slower producer's events
    are not late just because another producer is ahead."""
    latest = dict((previous or {}).get("max_event_time") or {})
    delay = timedelta(seconds=delay_s)
    marks = {t: (datetime.fromisoformat(v) - delay).isoformat(timespec="microseconds") for t, v in latest.items()}
    return marks, latest


COUNTS = ("records_read", "silver", "quarantined", "duplicates_removed")


def ledger_totals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums of the ledger's counts, and the quarantine by reason."""
    totals: dict[str, Any] = {k: sum(e[k] for e in entries) for k in COUNTS}
    reasons: dict[str, int] = {}
    for e in entries:
        for reason, n in e["quarantine_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    totals["quarantine_by_reason"] = dict(sorted(reasons.items()))
    return totals


LATENCY_BUCKET_MS = 100


def latency_histogram(counts: list[Any], committed_at: float) -> dict[str, int]:
    """Valid records by latency from their Kafka append to ``committed_at`` (epoch seconds, the
    silver commit that made them visible), in :data:`LATENCY_BUCKET_MS` steps.

    Args:
        counts: Rows with ``kt`` (the Kafka timestamp's bucket: epoch ms // the step) and ``n``.
        committed_at: When silver's commit of the batch ended.

    Returns:
        ``{str(latency in ms, rounded down to the step): records}``; a record appended in the
        middle of a bucket gets the latency of the bucket's middle.
    """
    step = LATENCY_BUCKET_MS
    hist: dict[str, int] = {}
    for r in counts:
        if r.kt is None:
            continue
        ms = max(0, int(committed_at * 1000 - (r.kt * step + step / 2)))
        key = str(ms // step * step)
        hist[key] = hist.get(key, 0) + r.n
    return dict(sorted(hist.items(), key=lambda kv: int(kv[0])))


def latency_percentiles(hists: Iterable[Mapping[str, int] | None],
                        quantiles: tuple[float, ...] = (0.50, 0.95, 0.99)) -> dict[str, float] | None:
    """Latency percentiles and max in seconds over merged :func:`latency_histogram`\\ s; None when
    they hold no record.

    A percentile is the upper edge of the bucket it falls in (never under-stated, at most a bucket
    over); ``max`` is the upper edge of the highest bucket.
    """
    merged: dict[int, int] = {}
    for hist in hists:
        for key, n in (hist or {}).items():
            merged[int(key)] = merged.get(int(key), 0) + int(n)
    total = sum(merged.values())
    if total <= 0:
        return None
    buckets = sorted(merged)
    out: dict[str, float] = {}
    for q in quantiles:
        seen = 0
        for b in buckets:
            seen += merged[b]
            if seen >= q * total:
                out[f"p{round(q * 100)}"] = (b + LATENCY_BUCKET_MS) / 1000.0
                break
    out["max"] = (buckets[-1] + LATENCY_BUCKET_MS) / 1000.0
    return out


class Lap:
    """Records the seconds since the previous lap under a name."""

    def __init__(self, into: dict[str, float], start: float) -> None:
        self.into, self.last = into, start

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.into[name] = round(now - self.last, 3)
        self.last = now


def gold_range(first: str, last: str, window_s: int) -> tuple[str, str]:
    """The windows ``[start, end)`` that event times from ``first`` to ``last`` (ISO, UTC) fall in."""
    epoch = datetime(1970, 1, 1)
    lo = int((datetime.fromisoformat(first) - epoch).total_seconds() // window_s * window_s)
    hi = int((datetime.fromisoformat(last) - epoch).total_seconds() // window_s * window_s) + window_s
    return ((epoch + timedelta(seconds=lo)).isoformat(sep=" "), (epoch + timedelta(seconds=hi)).isoformat(sep=" "))


MAX_WINDOW_SPANS = 32
"""Spans of gold windows a predicate names at most; beyond, the two closest are joined."""


def window_spans(times: Iterable[tuple[str, str]], window_s: int) -> list[list[str]]:
    """The windows ``[start, end)`` that each ``(first, last)`` run of event times falls in
    (:func:`gold_range`), spans that touch or overlap joined: a late session two hours behind
    the stream adds its own few minutes, not the two hours between."""
    return merge_spans([list(gold_range(first, last, window_s)) for first, last in times])


def merge_spans(*groups: Iterable[Iterable[str]] | None) -> list[list[str]]:
    """The union of spans ``[start, end)`` (UTC text, as :func:`gold_range` gives them; a group
    may be empty or None), sorted, touching or overlapping spans joined; at most
    :data:`MAX_WINDOW_SPANS` (the closest neighbours joined first)."""
    spans = sorted([str(lo), str(hi)] for group in groups for lo, hi in (group or ()))
    out: list[list[str]] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    while len(out) > MAX_WINDOW_SPANS:
        gaps = [datetime.fromisoformat(b[0]) - datetime.fromisoformat(a[1]) for a, b in zip(out, out[1:])]
        k = gaps.index(min(gaps))
        out[k:k + 2] = [[out[k][0], out[k + 1][1]]]
    return out


def gold_due(since: str | None, now: str, interval_s: float) -> bool:
    """Whether gold's pending windows are to be recomputed now: ``interval_s`` (or more) of
    ingest time since the oldest batch that left them (ISO times; ``since`` None: nothing waits
    yet, so only an interval of 0 is due)."""
    if interval_s <= 0:
        return True
    if since is None:
        return False
    return (datetime.fromisoformat(now) - datetime.fromisoformat(since)).total_seconds() >= interval_s


def reconcile(summary: dict[str, Any]) -> list[str]:
    """What does not add up between the ledger's counts and the tables' rows (empty: all does)."""
    problems = []
    read, silver, quarantined, dups = (summary[k] for k in COUNTS)
    if read != silver + quarantined + dups:
        problems.append(f"records_read {read} != silver {silver} + quarantined {quarantined} "
                        f"+ duplicates_removed {dups}")
    tables = summary["tables"]
    for key, table in (("records_read", "bronze"), ("silver", "silver"), ("quarantined", "quarantine")):
        if tables[table]["rows"] != summary[key]:
            problems.append(f"{table} holds {tables[table]['rows']} rows, the ledger says {key} {summary[key]}")
    return problems
