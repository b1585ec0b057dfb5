"""make report on a small lake holding hostile strings: every CSV reconciles with the lake, no raw
IP address leaves the lake, and the dashboard shows injected markup as text in a real browser.

(The reports of a trained model are checked in test_train_report.py, those of a whole `make all`
run, with its manifests, in tests/e2e/test_make_all.py.)
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tests.browser import open_page
from tests.conftest import make_settings
from tests.integration.train_data import generate, write_silver
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError

pytestmark = pytest.mark.integration

EVENTS = 600
SCRIPT = "https://shop.example.com/<script>window.pwned=1</script>"
ATTRIBUTE = 'https://shop.example.com/search?q="><img src=x onerror="window.pwned=2">'
DOLLARS = "https://shop.example.com/product/$x$-and-$y$"
HOSTILE = (SCRIPT, ATTRIBUTE, DOLLARS)
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Settings:
    """600 generated events, three of them with hostile page URLs; silver and gold as ingest writes them."""
    from website_activity.adapters.lake import read_table, write_batch
    from website_activity.stages.ingest import gold_frame

    # Every page in the dashboard's table, so that the hostile ones are there too.
    settings = make_settings(tmp_path_factory.mktemp("report"), mlflow__experiment="test-report-none",
                             report__top_pages=1000)
    events = generate(settings, 5, EVENTS)
    for i, url in enumerate(HOSTILE):
        events[10 * i + 3]["page_url"] = url
    assert write_silver(spark, settings, list(events)) == EVENTS
    # gold as ingest writes it for one batch: the windows of the batch's on-time events
    gold = gold_frame(read_table(spark, settings, "silver"), settings["ingest"]["gold_window_s"])
    write_batch(gold.repartition("event_date"), settings.path("gold"), 0, "event_date")
    return settings


@pytest.fixture(scope="module")
def reported(spark, lake: Settings) -> list[Path]:
    from website_activity.stages.report.report import run_report

    return run_report(spark, lake)


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def header(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split(",")


def test_every_report_is_written_with_its_header(reported: list[Path], lake: Settings):
    from website_activity.stages.report.report import (COEFFICIENTS_HEADER, FIVE_VS_HEADER, MODEL_METRICS_HEADER,
                                                       REPORT_FILES)

    out = lake.path("reports")
    assert sorted(p.name for p in reported) == sorted(REPORT_FILES)
    assert all(p.parent == out and p.stat().st_size > 0 for p in reported)
    assert not list(out.glob(".*.tmp"))
    assert header(out / "traffic_by_browser.csv") == ["browser", "events", "users", "sessions", "share"]
    assert header(out / "traffic_by_local_hour.csv") == ["local_weekday", "weekday", "local_hour", "events",
                                                         "sessions", "purchases"]
    assert header(out / "traffic_per_minute.csv") == ["window_start", "window_end", "device_type", "action_type",
                                                      "events", "users", "sessions"]
    assert header(out / "funnel.csv") == ["step", "stage", "meaning", "sessions", "share_of_sessions",
                                          "conversion_from_previous"]
    assert header(out / "model_metrics.csv") == list(MODEL_METRICS_HEADER)
    assert header(out / "coefficients.csv") == list(COEFFICIENTS_HEADER)
    assert header(out / "five_vs.csv") == list(FIVE_VS_HEADER)
    # No training run in this store: the model tables are empty, not missing.
    assert read(out / "model_metrics.csv") == [] and read(out / "coefficients.csv") == []


def test_the_csvs_reconcile_with_the_lake(spark, reported: list[Path], lake: Settings):
    from pyspark.sql import functions as F

    from website_activity.adapters.lake import read_silver

    silver = read_silver(spark, lake)
    truth = silver.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("session_id").alias("sessions"),
                       F.countDistinct("user_id").alias("users"),
                       F.countDistinct(F.when(F.col("action_type") == "purchase", F.col("session_id"))).alias("buyers"),
                       F.sum((~F.col("is_late")).cast("long")).alias("on_time")).first()
    out = lake.path("reports")
    tables = {name: read(out / f"{name}.csv") for name in (
        "traffic_by_page", "traffic_by_device", "traffic_by_browser", "traffic_by_local_hour",
        "traffic_per_minute", "funnel", "sessions_summary", "top_users", "five_vs")}

    for name in ("traffic_by_page", "traffic_by_device", "traffic_by_browser", "traffic_by_local_hour"):
        assert sum(int(r["events"]) for r in tables[name]) == truth["rows"] == EVENTS, name
    for name in ("traffic_by_device", "traffic_by_browser"):
        assert sum(float(r["share"]) for r in tables[name]) == pytest.approx(1.0, abs=2e-3)
    assert sum(int(r["events"]) for r in tables["traffic_per_minute"]) == truth["on_time"]
    hours = tables["traffic_by_local_hour"]
    assert all(0 <= int(r["local_hour"]) <= 23 and 0 <= int(r["local_weekday"]) <= 6 for r in hours)
    assert len({(r["local_weekday"], r["local_hour"]) for r in hours}) == len(hours)

    funnel = tables["funnel"]
    assert [r["stage"] for r in funnel] == ["session", "product_view", "add_to_cart", "checkout", "purchase"]
    assert int(funnel[0]["sessions"]) == truth["sessions"]
    assert int(funnel[-1]["sessions"]) == truth["buyers"] > 0
    assert float(funnel[-1]["share_of_sessions"]) == pytest.approx(truth["buyers"] / truth["sessions"], abs=1e-4)

    sessions = tables["sessions_summary"]
    assert len(sessions) == truth["sessions"] and sum(int(r["events"]) for r in sessions) == EVENTS
    assert sum(r["purchase"] == "True" for r in sessions) == truth["buyers"]
    assert all(ISO_UTC.match(r["start_time"]) and r["start_time"] <= r["end_time"] for r in sessions)
    assert all(float(r["duration_s"]) >= 0 for r in sessions)
    assert all(ISO_UTC.match(r["window_start"]) for r in tables["traffic_per_minute"])

    users = tables["top_users"]
    assert 0 < len(users) <= lake["report"]["top_users"]
    assert [int(r["events"]) for r in users] == sorted((int(r["events"]) for r in users), reverse=True)
    assert len(users) == min(truth["users"], lake["report"]["top_users"])

    vs = {(r["v"], r["measure"]): r for r in tables["five_vs"]}
    assert int(vs[("volume", "silver rows")]["value"]) == EVENTS
    assert {r["v"] for r in tables["five_vs"]} >= {"volume", "velocity", "variety"}
    assert sum(r["v"] == "variety" and r["measure"].startswith("field ") for r in tables["five_vs"]) == 12


def silver_ips(spark, settings: Settings) -> set[str]:
    from website_activity.adapters.lake import read_silver

    return {r[0] for r in read_silver(spark, settings).select("ip_address").distinct().collect()}


def raw_ip_hits(folder: Path, ips: set[str]) -> list[str]:
    """Raw addresses found in any file under ``folder``. An address ending in .0 may appear as its own
    /24 network (``a.b.c.0/24``): that is the truncated form, not the address."""
    hits = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for ip in ips:
            allowed = r"(?!/24)" if ip.endswith(".0") else ""
            if re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])(?!\.\d){allowed}", text):
                hits.append(f"{ip} in {path.name}")
    return hits


def test_no_raw_ip_address_appears_in_the_reports(spark, reported: list[Path], lake: Settings):
    ips = silver_ips(spark, lake)
    assert len(ips) > 50
    assert raw_ip_hits(lake.path("reports"), ips) == []
    pseudonyms = {r["ip_pseudonym"] for r in read(lake.path("reports") / "sessions_summary.csv")}
    assert pseudonyms and all(re.fullmatch(r"\d+\.\d+\.\d+\.0/24", p) for p in pseudonyms)


def test_hash_mode_needs_its_key_and_hides_the_networks_too(spark, lake: Settings, monkeypatch, tmp_path):
    from website_activity.stages.report.privacy import hash_ip
    from website_activity.stages.report.report import run_report

    hashed = make_settings(lake.path("data").parent, report__ip_mode="hash", mlflow__experiment="test-report-none",
                           paths__reports=str(tmp_path / "reports"))
    monkeypatch.delenv("WA_IP_HASH_KEY", raising=False)
    with pytest.raises(PipelineError, match="WA_IP_HASH_KEY is not set"):
        run_report(spark, hashed)
    monkeypatch.setenv("WA_IP_HASH_KEY", "a-test-key-of-32-characters-....")
    run_report(spark, hashed)

    rows = read(tmp_path / "reports" / "top_users.csv")
    assert rows and all(re.fullmatch(r"[0-9a-f]{16}", r["ip_pseudonym"]) for r in rows)
    ips = silver_ips(spark, lake)
    expected = {hash_ip(ip, b"a-test-key-of-32-characters-....") for ip in ips}
    assert {r["ip_pseudonym"] for r in rows} <= expected
    networks = {ip.rsplit(".", 1)[0] + ".0/24" for ip in ips}
    text = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "reports").glob("*.csv"))
    assert raw_ip_hits(tmp_path / "reports", ips) == [] and not any(n in text for n in networks)


def test_injected_markup_is_text_in_the_csv_and_the_dashboard(reported: list[Path], lake: Settings):
    out = lake.path("reports")
    pages = {r["page_url"] for r in read(out / "traffic_by_page.csv")}
    assert set(HOSTILE) <= pages  # CSV keeps the value exactly (quoted where needed)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "onerror=&#34;window.pwned=2&#34;" in html or "onerror=&quot;window.pwned=2&quot;" in html
    assert "<img src=x" not in html


def test_dashboard_in_headless_chromium(reported: list[Path], lake: Settings, tmp_path):
    shot = tmp_path / "dashboard.png"
    page = open_page(lake.path("reports") / "index.html", shot)

    assert page.console_errors == [] and page.page_errors == []
    assert page.pwned is None  # neither injected string ran
    assert page.title == "Website Activity dashboard"
    assert SCRIPT in page.text and DOLLARS in page.text  # shown as text, exactly
    # Nothing was fetched but the page itself and its embedded images.
    assert all(u.startswith(("file://", "data:")) for u in page.requests), page.requests
    alts = [c["alt"] for c in page.charts]
    assert {"traffic over time", "funnel", "device mix", "browser mix", "local hour heatmap",
            "top coefficients", "quarantine by reason"} <= set(alts)
    assert all(c["natural"] > 0 and c["width"] > 100 and c["height"] > 50 for c in page.charts), page.charts
    assert shot.stat().st_size > 20_000
