"""The bench's search for the highest live rate with a steady backlog, on made-up runs."""

from __future__ import annotations

from website_activity.devtools.bench import search_sustained


def run(rate: float, capacity: float) -> dict:
    """A live run of 60 s at ``rate`` on an ingest that handles ``capacity`` records/s: the
    backlog after each 5 s batch (the first, cold, left out by the rule) grows when rate > capacity."""
    behind = max(rate - capacity, 0.0)
    backlog = [int(rate * 5 + behind * 5 * i) for i in range(12)]
    return {"rate": rate, "backlog": backlog, "batch_records": [(int(min(rate, capacity) * 5), 5.0)] * 12}


def test_the_search_doubles_then_halves_twice_towards_the_rate_that_fell_behind() -> None:
    asked: list[float] = []

    def run_at(rate: float) -> dict:
        asked.append(rate)
        return run(rate, capacity=12_500)

    sustained, runs = search_sustained(run(2_000, 12_500), run_at, (4_000, 8_000, 16_000, 32_000), quick=False)
    # 32,000 not tried; 12,000 between 8,000 and 16,000 held, then 14,000 between 12,000 and 16,000 did not
    assert asked == [4_000, 8_000, 16_000, 12_000, 14_000]
    assert sustained == 12_000 and len(runs) == 5


def test_halfway_that_also_falls_behind_keeps_the_last_rate_that_held() -> None:
    sustained, runs = search_sustained(run(2_000, 9_000), lambda r: run(r, capacity=9_000),
                                       (4_000, 8_000, 16_000), quick=False)
    assert sustained == 8_000 and [r["rate"] for r in runs] == [4_000, 8_000, 16_000, 12_000, 10_000]
    sustained, runs = search_sustained(run(2_000, 10_500), lambda r: run(r, capacity=10_500),
                                       (4_000, 8_000, 16_000), quick=False)
    assert sustained == 10_000 and [r["rate"] for r in runs] == [4_000, 8_000, 16_000, 12_000, 10_000]


def test_the_narrowing_stops_when_no_thousand_lies_between() -> None:
    sustained, runs = search_sustained(run(2_000, 2_500), lambda r: run(r, capacity=2_500), (3_000,), quick=False)
    assert sustained == 2_000 and [r["rate"] for r in runs] == [3_000]  # halfway is 2,500 -> rounds to 2,000


def test_a_first_run_that_falls_behind_is_confirmed_at_ninety_percent_of_its_throughput() -> None:
    sustained, runs = search_sustained(run(2_000, 1_000), lambda r: run(r, capacity=1_000), (4_000,), quick=False)
    assert [r["rate"] for r in runs] == [900]  # 0.9 x the 1,000/s its batches kept up with
    assert sustained == 900
    sustained, runs = search_sustained(run(2_000, 1_000), lambda r: run(r, capacity=1_000), (), quick=True)
    assert runs == [] and sustained == 900


def test_one_slow_batch_at_the_end_is_not_a_growing_backlog() -> None:
    from website_activity.devtools.bench import _backlog_grows

    # the 4,000/s run of a bench at 2026-12-03 15:44: steady for a minute, then one gold batch
    held = [13776, 21927, 18531, 16676, 15161, 24993, 15822, 13407, 12861, 22225, 14721, 12602, 13181, 36867]
    assert not _backlog_grows({"rate": 4000.0, "backlog": held})
    # the 16,000/s run of the same bench: the stream fell behind at once
    assert _backlog_grows({"rate": 16000.0, "backlog": [0, 272649, 375484]})
    assert _backlog_grows({"rate": 4000.0, "backlog": [0, 5000, 9000, 14000, 20000, 26000, 31000]})
    assert _backlog_grows({"rate": 4000.0, "backlog": [0, 5000]})  # one batch after the cold one: no evidence
