"""`make all` in a temporary copy of the repository: the README's first command, end to end.

The copy shares .venv and .jvm with this checkout (setup's stamps make that a no-op) and has its
own data/, mlflow.db, reports/ and broker (on free ports), so nothing of the user's is touched.
`make all` runs once; reproducibility then needs only the stages up to train a second time.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.browser import open_page
from tests.integration.test_report import raw_ip_hits
from website_activity.devtools.broker import free_port
from website_activity.stages.report.report import REPORT_FILES

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# Enough sessions (about 450) for the validation split to judge the model: at 3,000 events (230
# sessions, 3 purchases in validation) the new model's val ROC AUC fell below mlflow.min_val_roc_auc,
# so no version became champion and make score stopped the chain.
EVENTS = 6000


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    copy = tmp_path_factory.mktemp("e2e") / "website-activity"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, copy / rel)
    for shared in (".venv", ".jvm"):
        (copy / shared).symlink_to(ROOT / shared)
    yield copy
    make(copy, "kafka-down")


def make(repo: Path, *args: str, timeout: float = 2400) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__") and k not in ("PROFILE", "WA_ROOT")}
    env.update(WA__KAFKA__PORT=str(PORTS[0]), WA__KAFKA__CONTROLLER_PORT=str(PORTS[1]))
    # Until ingest removes duplicates and quarantines bad enums, viewports and oversize records, those
    # faults would land in silver: off here, so silver holds exactly EVENTS. The kinds ingest already
    # quarantines (not JSON, truncated, missing field, wrong type) and late sessions stay on.
    env.update({f"WA__GENERATOR__FAULTS__{kind.upper()}": "0"
                for kind in ("duplicate", "unknown_enum", "out_of_viewport", "oversize")})
    return subprocess.run(["make", "--no-print-directory", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=timeout)


PORTS = (free_port(), free_port())


def silver_ids(repo: Path) -> list[str]:
    from deltalake import DeltaTable  # silver is a Delta table: a plain Parquet read would count removed files

    table = DeltaTable(str(repo / "data" / "silver")).to_pyarrow_table(columns=["event_id"])
    return sorted(table.column("event_id").to_pylist())


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has yet to reap it


def finished_runs(repo: Path) -> int:
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0]


def run_metric(repo: Path, key: str) -> list[float]:
    """``key`` of every finished MLflow run, oldest run first."""
    with sqlite3.connect(repo / "mlflow.db") as db:
        return [v for (v,) in db.execute(
            "select m.value from runs r join latest_metrics m on m.run_uuid = r.run_uuid "
            "where r.status = 'FINISHED' and m.key = ? order by r.start_time", (key,))]


# What make all's terminal may show: the stages' own lines (`<stage>: ...`) and the summary table's
# indented rows. Anything else came from a library or the JVM.
OWN_LINE = re.compile(r"^(setup|broker|reset|topics|produce|ingest|validate|train|score|report|all): |^  \S")
# Lines of Spark, log4j, py4j, MLflow, GX and tqdm, as they look when they leak (VERBOSE=1 shows them).
LIBRARY_LINE = re.compile(
    r"\b(WARN|INFO|DEBUG)\b|log4j|py4j|org\.apache|SparkContext|setLogLevel|NativeCodeLoader|"
    r"jdk\.incubator|mlflow\.[a-z_]+:|alembic|great_expectations|Calculating Metrics|"
    r"Downloading artifacts|it/s\]|\d+%\||Traceback|^\s+at ")


def library_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip() and (not OWN_LINE.match(ln) or LIBRARY_LINE.search(ln))]


def check_reports(repo: Path, tmp_path: Path) -> None:
    """What `make all` leaves in reports/: every report, 5Vs that agree with the run's manifests,
    no raw IP address anywhere, and a dashboard that renders in headless Chromium."""

    reports = repo / "reports"
    assert {f for f in REPORT_FILES} <= {p.name for p in reports.iterdir()}
    produce = json.loads((repo / "data" / "_runs" / "produce.json").read_text())
    ingest = json.loads((repo / "data" / "_runs" / "ingest.json").read_text())
    vs = {(r["v"], r["measure"]): r["value"] for r in read_csv(reports / "five_vs.csv")}
    assert int(vs[("volume", "silver rows")]) == ingest["silver"] == EVENTS
    assert int(vs[("volume", "JSON sent")]) == produce["bytes"]
    assert int(vs[("volume", "silver size")]) == ingest["tables"]["silver"]["bytes"]
    assert float(vs[("velocity", "produced")]) == pytest.approx(produce["rate"])
    assert float(vs[("velocity", "ingested")]) == pytest.approx(ingest["rate"])
    assert float(vs[("veracity", "quarantined")]) == pytest.approx(
        100 * ingest["quarantined"] / ingest["records_read"], abs=1e-5)
    assert vs[("veracity", "reconciled")] == "true" and float(vs[("veracity", "expectations passed")]) == 100.0
    per_s, per_min = float(vs[("volume", "silver growth per second")]), float(vs[("volume", "silver growth per minute")])
    assert per_min == pytest.approx(60 * per_s, rel=1e-4) and per_s > 0
    runs = read_csv(reports / "model_metrics.csv")
    assert [r["champion"] for r in runs] == ["true"]
    assert float(vs[("value", "ROC AUC lift over chance")]) == pytest.approx(float(runs[0]["roc_auc"]) - 0.5, abs=1e-5)
    assert len(read_csv(reports / "coefficients.csv")) > 5

    from deltalake import DeltaTable

    ips = {ip for ip in DeltaTable(str(repo / "data" / "silver")).to_pyarrow_table(columns=["ip_address"])
           .column("ip_address").to_pylist()}
    assert len(ips) > 100 and raw_ip_hits(reports, ips) == []

    page = open_page(reports / "index.html", tmp_path / "dashboard.png")
    assert page.console_errors == [] and page.page_errors == []
    assert len(page.charts) == 8 and all(c["natural"] > 0 and c["width"] > 100 for c in page.charts), page.charts
    assert "Data Docs" in page.text and "MLflow run" in page.text


def test_make_all_reconciles_and_reproduces(repo: Path, tmp_path: Path) -> None:
    first = make(repo, "all", f"EVENTS={EVENTS}")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # a clean terminal: only the stages' own lines and the summary table; the rest is in logs/
    assert library_lines(first.stdout + first.stderr) == [], first.stdout + first.stderr
    table = first.stdout[first.stdout.index("all: done in"):]
    for stage in ("produce", "ingest", "validate", "train", "score", "report"):
        assert re.search(rf"^  {stage} +\d+\.\d", table, re.M), table
    assert f"{EVENTS:,} events" in table and "gate passed" in table and "test ROC AUC" in table
    assert "vs oracle" in table and "is champion" in table and "reports/index.html" in table
    logs = repo / "logs"
    assert "jdk.incubator.vector" in (logs / "ingest.log").read_text()  # the JVM's lines went here instead
    ids = silver_ids(repo)
    # reconciliation: every produced event is in silver, once
    assert len(ids) == EVENTS and len(set(ids)) == EVENTS
    assert finished_runs(repo) == 1
    reports = repo / "reports"
    by_device = read_csv(reports / "traffic_by_device.csv")
    assert sum(int(r["events"]) for r in by_device) == EVENTS
    assert sum(int(r["events"]) for r in read_csv(reports / "traffic_by_page.csv")) == EVENTS
    assert len(read_csv(reports / "model_metrics.csv")) == 1
    # the quality gate ran before training and passed: its Data Docs and summary are there
    quality = read_csv(reports / "data_quality.csv")
    assert quality and {r["success"] for r in quality} == {"true"}
    assert (reports / "data_docs" / "index.html").is_file()
    check_reports(repo, tmp_path)
    # make validate regenerated gx/ from the config: byte for byte what is committed (no drift)
    for committed in [ROOT / "gx" / "great_expectations.yml", *sorted((ROOT / "gx").rglob("*.json"))]:
        regenerated = repo / committed.relative_to(ROOT)
        if "uncommitted" not in committed.parts:
            assert regenerated.read_text() == committed.read_text(), committed.relative_to(ROOT)

    # a fresh run of the same seed, as far as reproducibility needs (reset .. train): same lake,
    # one more MLflow run with the same metrics; with VERBOSE=1 the libraries' lines are shown
    second = make(repo, "reset", "topics", "produce", "ingest", "validate", "train", f"EVENTS={EVENTS}", "VERBOSE=1")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert library_lines(second.stdout + second.stderr) != []
    assert silver_ids(repo) == ids
    assert finished_runs(repo) == 2
    aucs = run_metric(repo, "roc_auc")
    assert len(aucs) == 2
    assert aucs[0] == pytest.approx(aucs[1], abs=1e-6)

    pid = int((repo / ".kafka" / "broker.pid").read_text())
    down = make(repo, "kafka-down")
    assert down.returncode == 0 and "broker: stopped" in down.stdout
    assert not alive(pid)
    # no process started from the copy is left running (Spark drivers end with their scripts)
    leftovers = subprocess.run(["pgrep", "-f", str(repo)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
