"""Live mode's pure helpers: latency percentiles from the ledger's histograms, the backlog, the batch line."""

from __future__ import annotations

import re
from importlib import resources

from website_activity.cli.live import Monitor, backlog, batch_line, health, latency_percentiles

# Histograms as the ingest ledger keeps them (latency_hist: {str(ms rounded down to 100): count});
# stubbed here, in the tests' data only.
HIST_A = {"0": 50, "100": 30, "900": 15, "2000": 5}
HIST_B = {"100": 40, "4900": 10}


def test_latency_percentiles_merge_histograms_and_take_the_bucket_upper_edge() -> None:
    lat = latency_percentiles([HIST_A, HIST_B])
    # 150 records: p50 is the 75th (bucket 100), p95 the 142.5th (bucket 4900), p99 too
    assert lat == {"p50": 0.2, "p95": 5.0, "p99": 5.0, "max": 5.0}
    assert latency_percentiles([HIST_A]) == {"p50": 0.1, "p95": 1.0, "p99": 2.1, "max": 2.1}
    assert latency_percentiles([]) is None and latency_percentiles([None, {}]) is None


def test_backlog_is_latest_minus_end_offsets() -> None:
    progress = {"batchId": 4, "sources": [{
        "endOffset": {"producer-a": {"0": 100, "1": 50}, "producer-b": {"0": 70}},
        "latestOffset": '{"producer-a": {"0": 100, "1": 60}, "producer-b": {"0": 75}}'}]}
    assert backlog(progress) == 15  # what Spark saw when it planned the batch
    assert backlog(progress, {"producer-a": {"0": 180, "1": 60}, "producer-b": {"0": 75}}) == 95  # the broker now
    assert backlog({"sources": []}) is None


def test_one_line_per_batch_once_its_stats_and_its_progress_are_in() -> None:
    lines: list[str] = []
    m = Monitor(lines.append)
    stats = {"batch_id": 3, "records_read": 2400, "seconds": 1.2, "silver": 2390, "quarantined": 10,
             "duplicates_removed": 0, "quarantine_by_reason": {"not_json": 10}, "latency_hist": HIST_A}
    progress = {"batchId": 3, "numInputRows": 2400, "inputRowsPerSecond": 2000.0, "processedRowsPerSecond": 1900.0,
                "batchDuration": 1300, "sources": [{"endOffset": {"t": {"0": 10}}, "latestOffset": {"t": {"0": 12}}}]}
    m.on_progress(progress)
    assert lines == []  # the stats are not in yet
    m.on_batch(stats)
    m.on_progress(progress)  # a report seen twice prints once
    assert lines == ["live: batch 3: 2,400 records in 1.2s (2,000 rows/s), latency p95 1.0s, backlog 2, "
                     "10 quarantined"]
    assert m.totals["records_read"] == 2400 and m.quarantine == {"not_json": 10}
    assert m.latency() == latency_percentiles([HIST_A])
    assert health(progress) == {"batch_id": 3, "input_rows": 2400, "input_rate": 2000.0, "processing_rate": 1900.0,
                                "batch_duration_s": 1.3, "backlog": 2, "timestamp": None}
    # a batch without a histogram (an older ledger) says so instead of a number
    assert "latency p95 -" in batch_line({**stats, "latency_hist": None}, None)


def test_the_page_needs_nothing_from_the_network() -> None:
    page = resources.files("website_activity").joinpath("templates/live.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and 'fetch("data.json"' in page
    for element in ("input-rate", "processing-rate", "batch-duration", "backlog", "latency", "active",
                    "per-device", "per-action", "funnel", "quarantine"):
        assert f'id="{element}"' in page


def test_a_live_producer_sends_no_record_early_and_wakes_once_a_tick() -> None:
    """``_send_live`` with a recording ``send``: 100 records due 4 ms apart go out at or after their
    time, in about one wake-up per LIVE_TICK_S rather than one per record."""
    import time

    from website_activity.simulate.generator import Chunk
    from website_activity.stages.produce import LIVE_TICK_S, _send_live, _Tally

    sent: list[tuple[float, bytes]] = []

    def send(key: bytes, value: bytes, partition: int) -> None:
        sent.append((time.time() * 1000.0, key))

    start = time.time() * 1000.0 + 20
    n = 100
    keys = [b"k%d" % i for i in range(n)]
    emits = [int(start) + 4 * i for i in range(n)]
    chunk = Chunk(keys, [b"v"] * n, {"event": n}, emit_ms=emits)
    lag = _send_live(send, chunk, {}, [0], _Tally())
    assert [k for _, k in sent] == keys  # all of them, in stream order
    due = dict(zip(keys, emits))
    assert all(at >= due[k] for at, k in sent)  # none before its event time: no future_time
    times = [at for at, _ in sent]
    wakeups = 1 + sum(b - a > 2.0 for a, b in zip(times, times[1:]))  # a pause between sends: a new wake-up
    assert wakeups <= 4 * n / (LIVE_TICK_S * 1000) + 3, wakeups  # 400 ms of records: about 8 ticks
    assert 0 <= lag < 1.0
