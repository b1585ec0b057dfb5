"""``make all``: the stages one after another, timed, and the table that ends the run: what each
stage produced or decided, and its seconds.

Each stage stays a Make target that works on its own. The stages before Spark (the broker, reset,
topics, produce) run as their ``make`` targets; the Spark stages (ingest to report) run their
scripts' commands in this process, one after another, on one shared SparkSession
(:func:`website_activity.adapters.spark.shared_session`): a JVM start, Delta's and the JIT's warm-up and
the MLflow and GX imports once instead of per stage, which was half of ``make all``'s time. Each
still writes its own log and its own lines. The table is read from what the stages left (the run
manifests, the gate's ``latest.json``, train's ``metrics.json``, ``predictions.csv``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from website_activity.adapters.files import read_manifest
from website_activity.core.catalog import (ingest_summary_path, model_metrics_path, predictions_csv_path,
                                           produce_manifest_path, validation_gate_path)
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line
from website_activity.core.manifests import IngestSummary, ModelMetrics, ProduceManifest, ValidationGate

STAGES = ("kafka-up", "reset", "topics", "produce", "ingest", "validate", "train", "score", "report")
# The stages that run in make all's own process, on one SparkSession: their scripts/<stage>.py.
SPARK_STAGES = ("ingest", "validate", "train", "score", "report")


@dataclass
class StageRun:
    """One stage of ``make all``: its exit code and wall-clock seconds."""

    stage: str
    returncode: int
    seconds: float


def run_make_stage(stage: str, *, make: str = "make", cwd: Path | None = None) -> int:
    """``make <stage>``; its output goes straight through. Command-line variables (``EVENTS=...``)
    reach the sub-make through ``MAKEFLAGS``."""
    return subprocess.run([make, "--no-print-directory", stage], cwd=cwd).returncode


def run_script_stage(stage: str, args: Sequence[str], scripts: Path) -> int:
    """``scripts/<stage>.py`` with ``args``, in this process: its click command, its log routing
    and its one-line errors as when Make runs it; its exit code."""
    spec = importlib.util.spec_from_file_location(f"_wa_stage_{stage}", scripts / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        module.main.main(args=list(args), prog_name=f"{stage}.py", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # the stage's own handler re-raises only when its output is on the terminal
        logging.getLogger("stage").exception("%s failed", stage)
        return 1
    return 0


def run_stages(stages: Sequence[str] = STAGES, *, make: str = "make", cwd: Path | None = None,
               script_args: dict[str, Sequence[str]] | None = None) -> list[StageRun]:
    """Run each stage until one fails: the stages of :data:`SPARK_STAGES` in this process on one
    shared SparkSession when ``script_args`` gives their arguments, the others as ``make <stage>``."""
    from website_activity.adapters.spark import shared_session

    runs: list[StageRun] = []
    scripts = (cwd or Path.cwd()) / "scripts"
    with shared_session():
        for stage in stages:
            started = time.monotonic()
            if script_args is not None and stage in SPARK_STAGES:
                rc = run_script_stage(stage, script_args.get(stage, ()), scripts)
            else:
                rc = run_make_stage(stage, make=make, cwd=cwd)
            runs.append(StageRun(stage, rc, time.monotonic() - started))
            if rc != 0:
                break
    return runs




def quarantine_kinds(by_reason: dict[str, int]) -> dict[str, int]:
    """Quarantined records by kind: ``missing_field:user_id`` and ``missing_field:page_url`` are
    both ``missing_field``; the largest kinds first."""
    kinds: Counter[str] = Counter()
    for reason, n in by_reason.items():
        kinds[reason.split(":", 1)[0]] += int(n)
    return dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


def _count_rows(csv_path: Path) -> int | None:
    try:
        with csv_path.open("rb") as f:
            return max(sum(1 for _ in f) - 1, 0)
    except OSError:
        return None


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def stage_results(settings: Settings) -> dict[str, str]:
    """One phrase per stage, from the files the stages wrote (a stage whose file is missing: none)."""
    root = settings.root
    out: dict[str, str] = {}
    produce = _read(out, "produce", produce_manifest_path(settings), ProduceManifest)
    if produce:
        faults = sum(int(v) for v in (produce.faults or {}).values())
        out["produce"] = (f"{produce.events:,} events + {faults:,} faults: "
                          f"{produce.sent:,} of {produce.records:,} records sent")
    ingest = _read(out, "ingest", ingest_summary_path(settings), IngestSummary)
    if ingest:
        kinds = quarantine_kinds(ingest.quarantine_by_reason or {})
        shown = ", ".join(f"{k} {v:,}" for k, v in kinds.items()) or "none"
        out["ingest"] = (f"silver {ingest.silver:,}, quarantined {ingest.quarantined:,} "
                         f"({shown}), duplicates removed {ingest.duplicates_removed:,}"
                         f"{'' if ingest.reconciled else ', NOT reconciled'}")
    gate = _read(out, "validate", validation_gate_path(settings), ValidationGate)
    if gate:
        failed = len(gate.failures or [])
        out["validate"] = (f"gate {gate.status}: {gate.expectations - failed} of "
                           f"{gate.expectations} expectations on {gate.rows:,} rows")
    model = _read(out, "train", model_metrics_path(settings), ModelMetrics)
    if model:
        m = model.metrics or {}
        auc = f"test ROC AUC {m['roc_auc']:.3f}" if isinstance(m.get("roc_auc"), (int, float)) else "no AUC"
        oracle = (f" vs oracle {m['oracle_roc_auc']:.3f}"
                  if isinstance(m.get("oracle_roc_auc"), (int, float)) else "")
        p = model.promotion or {}
        if p.get("promoted"):
            champ = f"version {p.get('version')} is champion"
        elif p:
            champ = f"version {p.get('version')} kept, champion stays version {p.get('previous_version')}"
        else:
            champ = "not registered"
        out["train"] = f"{auc}{oracle}; {champ}"
    predictions = predictions_csv_path(settings)
    scored = _count_rows(predictions)
    if scored is not None:
        out["score"] = f"{scored:,} sessions scored -> {_relative(predictions, root)}"
    index = settings.path("reports") / "index.html"
    if index.is_file():
        out["report"] = f"dashboard {_relative(index, root)}, CSVs in {_relative(index.parent, root)}/"
    return out


def _read(out: dict[str, str], stage: str, path: Path, cls: type[Any]) -> Any:
    """A stage's manifest (None: missing); a broken one leaves its one-line error as the stage's phrase."""
    try:
        return read_manifest(path, cls)
    except PipelineError as exc:
        out[stage] = first_line(exc)
        return None


def summary_table(runs: Sequence[StageRun], results: dict[str, str]) -> str:
    """The table ``make all`` ends with: stage, seconds, what it produced or decided."""
    width = max([len(r.stage) for r in runs] + [5])
    lines = [f"  {'stage':<{width}}  {'seconds':>7}  result"]
    for r in runs:
        what = results.get(r.stage, "") if r.returncode == 0 else f"FAILED (exit {r.returncode})"
        lines.append(f"  {r.stage:<{width}}  {r.seconds:7.1f}  {what}".rstrip())
    lines.append(f"  {'total':<{width}}  {sum(r.seconds for r in runs):7.1f}")
    return "\n".join(lines)


def run_all(settings: Settings, echo: Callable[[str], Any], *, stages: Sequence[str] = STAGES,
            common_args: Sequence[str] = (), force: bool = False) -> int:
    """``make all``: run the stages, then print the summary table; the exit code of the first failure.

    Args:
        common_args: The options every stage's script gets (``--profile``, ``--port``).
        force: Train even if validation failed (``make all FORCE=1``).
    """
    script_args = {stage: list(common_args) for stage in SPARK_STAGES}
    if force:
        script_args["train"].append("--force")
    runs = run_stages(stages, make=os.environ.get("MAKE", "make"), cwd=settings.root, script_args=script_args)
    failed = next((r for r in runs if r.returncode != 0), None)
    total = sum(r.seconds for r in runs)
    echo(f"all: {'stopped at ' + failed.stage if failed else 'done'} in {total:.0f}s")
    echo(summary_table(runs, stage_results(settings)))
    if failed is None:
        echo(f"all: reports in {_relative(settings.path('reports'), settings.root)}/, runs in "
             f"{settings.tracking_uri} (make mlflow-ui); stage logs in "
             f"{_relative(settings.path('logs'), settings.root)}/. The broker is still up: make kafka-down")
        return 0
    return failed.returncode
