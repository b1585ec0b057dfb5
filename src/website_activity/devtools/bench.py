"""`make bench`: each stage of the pipeline beside its natural baseline, measured in one run.

Everything runs on services the bench starts itself: an embedded Kafka broker on free ports with its
home in a scratch folder, and every output of the pipeline (lake, checkpoints, MLflow store, reports,
GX project) moved into that folder by configuration overrides, so the user's data/, mlflow.db and
reports/ are never touched. Only ``reports/bench.json`` and ``reports/bench.csv`` are written
(``--out-dir`` moves them).

The stages are the ones ``make all`` runs after ``kafka-up``: topics, produce, ingest, validate,
train, score, report, each as its own script in its own process (as make runs them), with the same
configuration. Between them, the baselines:

* the generator (both producers' streams, encoding included, on one core) against a naive generator
  that calls Faker for every field of every event (kept here as the baseline), per CPU second;
* the two producers against Kafka's ``org.apache.kafka.tools.ProducerPerformance`` (from
  ``.jvm/tools``, fetched by ``make setup``) on the same broker, same record count, records drawn
  from our own events (same size), same acks, idempotence, linger, batch size and compression;
* ingest (Kafka -> bronze + silver, the query's own seconds from ``ingest.json``) against a Spark
  batch ``read.format("kafka")`` -> Parquet of the same topics, on the same master.

Peak RSS is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``) of each process,
polled while a stage runs: the producer processes, the Spark driver JVM of each stage, the broker.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from website_activity.adapters.files import require_manifest
from website_activity.core.catalog import ingest_summary_path, model_metrics_path, produce_manifest_path
from website_activity.core.config import Settings, load_config, repo_root
from website_activity.core.errors import PipelineError
from website_activity.core.manifests import IngestSummary, ModelMetrics, ProduceManifest, ValidationGate

log = logging.getLogger(__name__)

QUICK_EVENTS = 100_000
# The stages of `make all` after kafka-up (reset is a no-op on a fresh scratch folder).
STAGES = ("topics", "produce", "ingest", "validate", "train", "score", "report")
# Inputs the pipeline reads but never writes: left where they are.
INPUT_PATHS = ("jvm",)


# -- machine and processes --------------------------------------------------------------------
def machine_facts() -> dict[str, Any]:
    """Cores, memory and load average now (the machine may be shared: the load says how much)."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 ** 2, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry.name)] = (ppid, cmd)
    return table


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size in MB (VmHWM), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def classify(cmd: str) -> str:
    if "org.apache.spark.deploy.SparkSubmit" in cmd:
        return "spark_driver"
    if "ProducerPerformance" in cmd:
        return "producer_performance"
    if "kafka.Kafka" in cmd:
        return "broker"
    if "python" in cmd.split(" ", 1)[0]:
        return "python"
    return "other"


class RssWatch:
    """Poll the descendants of ``root`` and keep each kind's highest peak RSS (MB)."""

    def __init__(self, root: int, interval_s: float = 0.25) -> None:
        self.root, self.interval_s = root, interval_s
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def poll(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = [self.root]
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            if pid not in table:
                continue
            rss = peak_rss_mb(pid)
            if rss is not None:
                kind = classify(table[pid][1])
                self.peaks[kind] = max(self.peaks.get(kind, 0.0), rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)
        self.poll()


# -- scratch configuration ---------------------------------------------------------------------
def scratch_overrides(root: Path, profile: str | None) -> dict[str, Any]:
    """Every output of the configuration (paths, MLflow store) moved under ``root``."""
    base = load_config(profile, {})
    values: dict[str, Any] = {f"paths.{key}": str(root / key) for key in base["paths"] if key not in INPUT_PATHS}
    values["mlflow.tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
    values["mlflow.artifact_root"] = str(root / "mlruns")
    values["producer.progress"] = False
    return values


def env_for(overrides: dict[str, Any]) -> dict[str, str]:
    """The overrides as WA__SECTION__KEY environment variables (for the stage scripts)."""
    env = dict(os.environ)
    for key, value in overrides.items():
        env["WA__" + key.upper().replace(".", "__")] = json.dumps(value) if isinstance(value, (list, bool)) \
            else str(value)
    return env


@dataclass
class StageRun:
    name: str
    seconds: float
    peaks: dict[str, float]
    stdout: str


def run_stage(name: str, args: list[str], env: dict[str, str], logs: Path | None = None,
              timeout_s: float = 3600) -> StageRun:
    """One stage's script in its own process, as make runs it; its wall time and peak RSS.
    With ``logs``: its output goes to ``<logs>/<name>.log`` (the per-batch lines of ingest...)."""
    script = repo_root() / "scripts" / f"{name}.py"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    with RssWatch(proc.pid) as watch:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise PipelineError(f"stage {name} took more than {timeout_s:.0f}s") from None
    seconds = time.monotonic() - started
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{name}.log").write_text(out + err, encoding="utf-8")
    if proc.returncode != 0:
        lines = [ln for ln in (err + out).splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if f"{name}: error" in ln), lines[-1] if lines else "")
        raise PipelineError(f"stage {name} exited with code {proc.returncode}: {last.strip()}")
    log.info("%s: %.1fs", name, seconds)
    return StageRun(name, seconds, watch.peaks, out)


# -- generator vs naive ------------------------------------------------------------------------
def naive_generate(n: int, seed: int, viewports: dict) -> int:
    """The baseline: every field of every event from Faker, one json.dumps per event; bytes made."""
    from faker import Faker

    fake = Faker()
    fake.seed_instance(seed)
    t = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    size = 0
    for _ in range(n):
        device = fake.random_element(["desktop", "tablet", "mobile"])
        w, h = viewports[device]
        action = fake.random_element(["view", "click", "scroll", "add_to_cart", "purchase"])
        t += timedelta(milliseconds=fake.random_int(1, 5000))
        event = {
            "event_id": fake.uuid4(), "user_id": fake.uuid4(), "page_url": fake.url() + fake.uri_path(),
            "timestamp": t.isoformat(timespec="milliseconds"), "action_type": action,
            "browser": fake.random_element(["Chrome", "Safari", "Firefox", "Edge", "Opera"]),
            "timezone": fake.timezone(), "device_type": device,
            "click_coordinates_x": fake.random_int(0, w - 1) if action == "click" else -1,
            "click_coordinates_y": fake.random_int(0, h - 1) if action == "click" else -1,
            "session_id": fake.uuid4(), "ip_address": fake.ipv4_public(),
        }
        size += len(json.dumps(event, separators=(",", ":")).encode())
    return size


def project_generate(settings: Settings, events: int, seed: int) -> tuple[int, list[bytes], float]:
    """This project's generator, both producers' streams one after the other, encoded to bytes
    with faults: (records, a sample of valid values for ProducerPerformance's payload, CPU seconds
    of the generation proper, without the generators' one-off setup)."""
    from website_activity.simulate.generator import EventGenerator
    from website_activity.stages.produce import split_events

    records = 0
    sample: list[bytes] = []
    gens = [(EventGenerator.from_settings(settings, seed, topic, events=n), n)
            for topic, n in zip(settings.topics, split_events(events, len(settings.topics)))]
    started = time.process_time()  # the one-off setup (users, catalogue) is timed apart
    for gen, n in gens:
        for chunk in gen.chunks(n):
            records += len(chunk.values)
            if len(sample) < 20000:
                sample += [v for v in chunk.values[:2000] if v.startswith(b'{"event_id"') and len(v) < 4096]
    return records, sample, time.process_time() - started


def cpu_timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w, time.process_time() - c


# -- producers vs ProducerPerformance ------------------------------------------------------------
def producer_performance(settings: Settings, bootstrap: str, topic: str, count: int, payload: Path) -> float:
    """Kafka's ProducerPerformance on our broker with our producer settings: records per second."""
    from website_activity.adapters.jvm import java_executable

    tools = settings.path("jvm") / "tools"
    if not any(tools.glob("kafka-tools-*.jar")):
        raise PipelineError(f"no kafka-tools jar in {tools}: run make setup")
    p = settings["producer"]
    props = [f"bootstrap.servers={bootstrap}", f"acks={p['acks']}", "enable.idempotence=true",
             f"linger.ms={p['linger_ms']}", f"batch.size={p['batch_size']}",
             f"compression.type={p['compression_type'] or 'none'}"]
    cmd = [java_executable(), "-Xmx512m", "-cp", f"{tools}/*", "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(count), "--throughput", "-1",
           "--payload-file", str(payload), "--payload-delimiter", "\n", "--producer-props", *props]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if "records sent" in ln]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise PipelineError(f"ProducerPerformance failed: {last}")
    # "N records sent, X records/sec (Y MB/sec), ... avg latency, ..."
    return float(lines[-1].split(" records sent, ")[1].split(" records/sec")[0])


# -- ingest vs Spark batch -----------------------------------------------------------------------
def spark_batch_copy(spark: Any, settings: Settings, out: Path) -> tuple[int, float]:
    """A plain batch read of the topics written to Parquet (Kafka columns as they are): rows, seconds."""
    started = time.monotonic()
    df = (spark.read.format("kafka").option("kafka.bootstrap.servers", settings.bootstrap_servers)
          .option("subscribe", ",".join(settings.topics)).option("startingOffsets", "earliest")
          .option("endingOffsets", "latest").load()
          .select("key", "value", "topic", "partition", "offset", "timestamp"))
    df.write.mode("overwrite").parquet(str(out))
    seconds = time.monotonic() - started
    rows = spark.read.parquet(str(out)).count()
    return rows, seconds


# -- the figures ---------------------------------------------------------------------------------
@dataclass
class Figure:
    key: str
    label: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    holds: bool | None = None
    runs: int = 1

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


@dataclass
class Bench:
    events: int
    runs: int
    seed: int
    figures: list[Figure] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        f = Figure(*args, **kwargs)
        self.figures.append(f)
        log.info("%s: %s %s%s", f.label, _fmt(f.value), f.unit,
                 f" ({_fmt(f.ratio)}x baseline)" if f.ratio is not None else "")
        return f


def _model_checks(bench: Any, summary: ModelMetrics) -> None:
    """The model against the generator's truth at scale: the gap to the true probabilities on the
    same sessions, and the signs of the inputs that mirror the true model's."""
    from website_activity.stages.train.evaluation import true_signs

    m = summary.metrics
    at_scale = bench.events >= 1_000_000
    if m.get("oracle_gap") is not None:
        bench.add("model_oracle_gap", "true probabilities' test ROC AUC minus the model's (same sessions)",
                  float(m["oracle_gap"]), "AUC", target="<= 0.01 at 1M", holds=(m["oracle_gap"] <= 0.01) if at_scale else None)
        signs = true_signs(summary.coefficients_per_unit)
        bench.add("model_true_signs", f"inputs mirroring the true model with its signs ({', '.join(sorted(signs))})",
                  float(sum(signs.values())), f"of {len(signs)}", target="all at 1M",
                  holds=all(signs.values()) if at_scale else None)
        bench.extra["model_true_signs"] = signs


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def run_bench(settings: Settings, profile: str | None, events: int, *, runs: int = 3, seed: int = 7,
              generator_events: int | None = None, naive_events: int = 5000,
              workdir: Path | None = None, logs: Path | None = None, growth_batch: int | None = None,
              growth_batches: int | None = None, live_seconds: float | None = None) -> Bench:
    """The whole bench; every service and output in ``workdir`` (a temp folder if None, removed);
    each stage's output in ``logs/<stage>.log`` if given. ``growth_batch`` (records per batch of
    the batch-growth phase, default :data:`GROWTH_BATCH`), ``growth_batches`` (batches per lake
    size, the first a warm-up, default :data:`GROWTH_BATCHES`) and ``live_seconds`` (each live run's
    length, default :data:`LIVE_DURATION_S`, 30 s below 1M events) make a lighter bench that still
    computes every figure (the test suite's smoke run)."""
    from website_activity.devtools.broker import EmbeddedBroker, free_port

    bench = Bench(events=events, runs=runs, seed=seed)
    bench.extra["machine_start"] = machine_facts()
    if logs is not None and logs.is_dir():  # this run's logs only (a live rate of an earlier run's search is not)
        for old in logs.glob("*.log"):
            old.unlink()
    scratch = workdir or Path(tempfile.mkdtemp(prefix="wa-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    overrides = scratch_overrides(scratch / "lake", profile)
    port, controller = free_port(), free_port()
    overrides.update({"kafka.port": port, "kafka.controller_port": controller})
    s = load_config(profile, overrides)
    broker = EmbeddedBroker(home=s.path("kafka_home"), jvm_dir=s.path("jvm") / "broker", port=port,
                            controller_port=controller, heap=s["kafka"]["heap"],
                            startup_timeout_s=float(s["kafka"]["startup_timeout_s"]))
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the broker's readiness probe is noisy
    try:
        _generator_figures(bench, s, generator_events or min(events, 300_000), naive_events)
        broker_pid = broker.start()
        _pipeline(bench, s, profile, overrides, scratch, logs)
        _batch_growth(bench, s, scratch, growth_batch or GROWTH_BATCH, growth_batches or GROWTH_BATCHES)
        live_phase(bench, s, profile, scratch, logs,
                   **({"duration_s": live_seconds} if live_seconds is not None else {}))
        rss = peak_rss_mb(broker_pid)
        if rss is not None:
            bench.add("broker_peak_rss_mb", "broker peak RSS", rss, "MB")
    finally:
        broker.stop()
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    bench.extra["machine_end"] = machine_facts()
    return bench


def _generator_figures(bench: Bench, s: Settings, gen_events: int, naive_events: int) -> None:
    viewports = s["validation"]["viewports"]
    naive_rates, gen_rates, setup_s = [], [], []
    sample: list[bytes] = []
    for _ in range(bench.runs):
        _, _, cpu = cpu_timed(lambda: naive_generate(naive_events, bench.seed, viewports))
        naive_rates.append(naive_events / cpu)
        (_, sample, gen_cpu), _, cpu = cpu_timed(lambda: project_generate(s, gen_events, bench.seed))
        gen_rates.append(gen_events / gen_cpu)
        setup_s.append(round(cpu - gen_cpu, 3))
    naive = statistics.median(naive_rates)
    bench.extra["generator"] = {"events": gen_events, "naive_events": naive_events,
                                "events_per_cpu_s": gen_rates, "setup_cpu_s": setup_s,
                                "naive_events_per_cpu_s": naive_rates}
    bench.extra["payload_sample"] = sample
    bench.add("naive_events_per_s", "naive generator (Faker per field), one core", naive, "events/cpu-s",
              runs=bench.runs)
    f = bench.add("generator_events_per_s", "generator, one core", statistics.median(gen_rates), "events/cpu-s",
                  baseline=naive, target=">= 40x naive", runs=bench.runs)
    f.holds = (f.ratio or 0) >= 40


def _pipeline(bench: Bench, s: Settings, profile: str | None, overrides: dict[str, Any], scratch: Path,
              logs: Path | None) -> None:
    from website_activity.adapters.topics import create_topics
    from website_activity.core.catalog import validation_gate_path

    env = env_for({k: v for k, v in overrides.items() if k != "kafka.port"})
    common = ["--port", str(s["kafka"]["port"])] + (["--profile", profile] if profile else [])
    args = {"produce": ["--events", str(bench.events), "--seed", str(bench.seed), "--no-progress"]}
    peaks: dict[str, float] = {}
    for name in STAGES:
        r = run_stage(name, common + args.get(name, []), env, logs)
        bench.stages[name] = round(r.seconds, 2)
        if name == "produce":
            peaks["producer"] = r.peaks.get("python", 0.0)
        for kind, mb in r.peaks.items():
            if kind == "spark_driver":
                peaks["spark_driver"] = max(peaks.get("spark_driver", 0.0), mb)
        if name == "produce":
            _producer_baseline(bench, s, require_manifest(produce_manifest_path(s), ProduceManifest), create_topics)
        elif name == "ingest":
            _ingest_baseline(bench, s, require_manifest(ingest_summary_path(s), IngestSummary), scratch)
        elif name == "validate":
            latest = require_manifest(validation_gate_path(s), ValidationGate)
            bench.add("validate_seconds", "validation (both suites, Data Docs)", float(latest.seconds), "s")
        elif name == "train":
            bench.add("train_seconds", "training (features, search, evaluation, MLflow)", r.seconds, "s")
            trained = require_manifest(model_metrics_path(s), ModelMetrics)
            m = trained.metrics
            bench.extra["model"] = {k: m.get(k) for k in ("roc_auc", "pr_auc", "log_loss", "oracle_roc_auc",
                                                          "oracle_gap")}
            bench.add("model_roc_auc", "model test ROC AUC", float(m["roc_auc"]), "")
            _model_checks(bench, trained)
            if m.get("oracle_roc_auc") is not None:
                gap = float(m["oracle_roc_auc"]) - float(m["roc_auc"])
                bench.add("oracle_roc_auc", "oracle ROC AUC (generator's true model)", float(m["oracle_roc_auc"]),
                          "", target="model within 0.03", holds=gap <= 0.03)
        elif name == "score":
            line = next((ln for ln in r.stdout.splitlines() if "sessions scored" in ln), "")
            rows = int(line.split("score: ", 1)[1].split(" ", 1)[0]) if line else 0
            secs = float(line.split(") in ", 1)[1].split("s ", 1)[0]) if line else r.seconds
            bench.add("score_rows_per_s", "scoring", rows / secs if secs else 0.0, "rows/s")
    total = sum(bench.stages.values())
    bench.add("pipeline_seconds", f"make all stages at {bench.events:,} events", total, "s",
              target="<= 360 s at 1M", holds=(total <= 360) if bench.events >= 1_000_000 else None)
    ingest = require_manifest(ingest_summary_path(s), IngestSummary)
    bench.add("silver_files", "silver files", float(ingest.silver_files), "files")
    avg_mb = ingest.silver_avg_file_bytes / 1e6
    bench.add("silver_avg_file_mb", "silver average file size", avg_mb, "MB", target=">= 32 MB at 1M",
              holds=(avg_mb >= 32) if bench.events >= 1_000_000 else None)  # a smaller lake is smaller in all
    bench.add("producer_peak_rss_mb", "producer process peak RSS", peaks.get("producer", 0.0), "MB")
    bench.add("spark_driver_peak_rss_mb", "Spark driver (JVM) peak RSS, largest stage",
              peaks.get("spark_driver", 0.0), "MB")


def _producer_baseline(bench: Bench, s: Settings, manifest: ProduceManifest, create_topics: Any) -> None:
    records = int(manifest.records)
    # As ProducerPerformance counts: records acknowledged over the send loop (the two producers run
    # in parallel: until the slower one is done). make produce's own rate, from the processes' spawn
    # (Python start, imports, generator setup, ground truth) to their end, is kept beside it.
    sending = records / max(t["seconds"] for t in manifest.topics)
    rate = sending
    payload = s.path("data") / "bench_payload.txt"
    payload.parent.mkdir(parents=True, exist_ok=True)
    sample = list(bench.extra.pop("payload_sample"))
    random.Random(bench.seed).shuffle(sample)
    payload.write_bytes(b"\n".join(sample[:10000]))
    sizes = [len(v) for v in sample[:10000]]
    tag = uuid.uuid4().hex[:6]
    pp_settings = load_config(None, {"kafka.port": s["kafka"]["port"], "topics.names": [f"bench-pp-{tag}"]})
    create_topics(pp_settings)
    pp_runs = [producer_performance(s, s.bootstrap_servers, f"bench-pp-{tag}", records, payload)
               for _ in range(bench.runs)]
    pp = statistics.median(pp_runs)
    bench.extra["producers"] = {"records": records, "events": manifest.events, "seconds": manifest.seconds,
                                "records_per_s_from_spawn": manifest.rate,
                                "send_seconds": [t["seconds"] for t in manifest.topics],
                                "bytes": manifest.bytes, "avg_record_bytes": manifest.bytes / records,
                                "payload_avg_record_bytes": sum(sizes) / len(sizes),
                                "producer_performance_records_per_s": pp_runs,
                                "compression": s["producer"]["compression_type"]}
    bench.add("producer_performance_records_per_s", "Kafka ProducerPerformance (one Java producer)", pp,
              "records/s", runs=bench.runs)
    bench.add("producers_records_per_s", "the two producers (python, two processes)", rate, "records/s",
              baseline=pp, target=">= 50k/s", holds=rate >= 50_000)


def _ingest_baseline(bench: Bench, s: Settings, summary: IngestSummary, scratch: Path) -> None:
    from website_activity.adapters.spark import spark_session

    rate = float(summary.rate)
    rates, seconds = [], []
    with spark_session(s, "bench-baseline") as spark:
        for i in range(bench.runs):
            rows, secs = spark_batch_copy(spark, s, scratch / f"baseline-{i}")
            rates.append(rows / secs)
            seconds.append(round(secs, 2))
            shutil.rmtree(scratch / f"baseline-{i}", ignore_errors=True)
    batch = statistics.median(rates)
    bench.extra["ingest"] = {"records": summary.records_read, "seconds": summary.seconds,
                             "batches": summary.batches, "spark_batch_seconds": seconds,
                             "reconciled": summary.reconciled}
    bench.add("spark_batch_records_per_s", "Spark batch read.format(kafka) -> Parquet", batch, "records/s",
              runs=bench.runs)
    f = bench.add("ingest_records_per_s", "ingest (Kafka -> bronze, quarantine, silver, gold)", rate, "records/s",
                  baseline=batch, target=f">= 0.5x batch and >= 5x v1's {INGEST_V1:,}/s")
    f.holds = (f.ratio or 0) >= 0.5 and rate >= 5 * INGEST_V1


# -- ingest's batch time as the lake grows ---------------------------------------------------------
GROWTH_BATCH = 10_000
GROWTH_BATCHES = 7  # per lake size; the first is a warm-up, the median of the other six is kept
GROWTH_BATCH_SPAN_S = 5  # seconds of traffic per growth batch: 10k records at 2,000 events/s
INGEST_V1 = 19_298  # records/s, the Parquet ingest before Delta (README "Performance", 1M events)


def _batch_growth(bench: Bench, s: Settings, scratch: Path, batch: int = GROWTH_BATCH,
                  batches: int = GROWTH_BATCHES) -> None:
    """``ingest_batch_10k_s`` and the batch time with 3x the events in the lake.

    Ingest's own :func:`~website_activity.stages.ingest.process_batch` runs on micro-batches of ``batch``
    (10k) new records (``batches`` per lake size, the first a warm-up) read from the topics (their
    exact offsets). Each batch is what a stream hands ingest: the traffic of a few seconds (the
    generator's clock going on where the lake's week ends, :data:`GROWTH_BATCH_SPAN_S` of session
    starts per batch, sent at once), on the lake's last date. First on the lake the pipeline left
    (``events``), then after silver was tripled with two more weeks of history: its rows copied
    under new event ids, one and two weeks earlier (one Spark append: far cheaper than producing
    and ingesting 2x more). The batches go to the same tables under an app id of their own, with
    their ledger apart, so the time is that of a real batch on that lake.
    """
    import copy

    from pyspark.sql import functions as F

    from website_activity.adapters.lake import read_delta, table_stats
    from website_activity.adapters.spark import spark_session
    from website_activity.stages.ingest import ledger_entry, process_batch
    from website_activity.stages.produce import run_produce

    data = copy.deepcopy(s.data)
    data["paths"]["runs"] = str(scratch / "growth_runs")  # the ledger of these batches, apart
    gen = data["generator"]
    lake_end = datetime.fromisoformat(gen["start_time"]) + timedelta(hours=float(gen["span_h"]))
    gen["span_h"] = GROWTH_BATCH_SPAN_S / 3600
    g = Settings(data=data, root=s.root)
    slices = []
    for i in range(2 * batches):
        gen["start_time"] = (lake_end + timedelta(seconds=i * GROWTH_BATCH_SPAN_S)).isoformat()
        before = _end_offsets(g)
        run_produce(g, batch, seed=1000 + i)
        slices.append((before, _end_offsets(g)))
    times: dict[str, list[float]] = {}
    phases: dict[str, list[dict[str, float]]] = {}  # each batch's, as its ledger entry has them
    with spark_session(g, "bench-growth") as spark:
        for i, (start, end) in enumerate(slices):
            if i == batches:
                silver = read_delta(spark, g.path("silver"))
                copies = [silver.withColumn("event_id", F.concat("event_id", F.lit(f"-week{k}")))
                          .withColumn("timestamp", F.col("timestamp") - F.expr(f"INTERVAL {7 * k} DAYS"))
                          .withColumn("event_date", F.to_date("timestamp")) for k in (1, 2)]
                (copies[0].unionByName(copies[1]).write.format("delta").mode("append")
                 .save(str(g.path("silver"))))
            kafka = (spark.read.format("kafka").option("kafka.bootstrap.servers", g.bootstrap_servers)
                     .option("subscribe", ",".join(g.topics)).option("startingOffsets", json.dumps(start))
                     .option("endingOffsets", json.dumps(end)).load())
            # the batch before's ledger entry, as the stream hands it: its watermark and the gold
            # windows it left pending (gold is recomputed every ingest.gold_interval_s)
            stats = process_batch(kafka, i, g, ledger_entry(g, i - 1), app_id="bench-growth")
            times.setdefault("1x" if i < batches else "3x", []).append(stats.seconds)
            phases.setdefault("1x" if i < batches else "3x", []).append(stats.phases)
        lake_rows = table_stats(g.path("silver"))["rows"]
    small, big = (statistics.median(times[k][1:]) for k in ("1x", "3x"))
    bench.extra["batch_growth"] = {"records_per_batch": batch, "seconds": times, "phases": phases,
                                   "silver_rows_after": lake_rows}
    f = bench.add("ingest_batch_10k_s", f"a warm micro-batch of {batch:,} records, {GROWTH_BATCH_SPAN_S} s of traffic (foreachBatch)", small, "s",
                  target="<= 3 s", runs=batches - 1)
    f.holds = small <= 3
    f = bench.add("ingest_batch_growth", f"{batch:,}-record batch time, 3 weeks in the lake vs 1", big, "s", baseline=small,
                  target="<= 1.2x", runs=batches - 1)
    f.holds = (f.ratio or 0) <= 1.2


def _end_offsets(s: Settings) -> dict[str, dict[str, int]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, request_timeout_ms=15000)
    try:
        parts = [TopicPartition(t, p) for t in s.topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(parts)
    finally:
        consumer.close()
    out: dict[str, dict[str, int]] = {}
    for tp, offset in ends.items():
        out.setdefault(tp.topic, {})[str(tp.partition)] = offset
    return out


# -- output ------------------------------------------------------------------------------------
CSV_FIELDS = ("figure", "label", "value", "unit", "baseline", "ratio", "target", "holds", "runs")


def rows(bench: Bench) -> list[dict[str, Any]]:
    return [{"figure": f.key, "label": f.label, "value": round(f.value, 4), "unit": f.unit,
             "baseline": None if f.baseline is None else round(f.baseline, 4),
             "ratio": None if f.ratio is None else round(f.ratio, 3), "target": f.target,
             "holds": f.holds, "runs": f.runs} for f in bench.figures]


def write_outputs(bench: Bench, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"events": bench.events, "runs": bench.runs, "seed": bench.seed,
           "figures": {r["figure"]: r for r in rows(bench)}, "stages_seconds": bench.stages, **bench.extra}
    js, cs = out_dir / "bench.json", out_dir / "bench.csv"
    js.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    with cs.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows(bench):
            w.writerow({k: "" if v is None else v for k, v in r.items()})
    return js, cs


def table(bench: Bench) -> str:
    """The figures as a Markdown table (printed, and pasted into the README)."""
    lines = ["| figure | value | baseline | ratio | target | holds |", "|---|---:|---:|---:|---|---|"]
    for f in bench.figures:
        holds = {True: "yes", False: "**no**", None: ""}[f.holds]
        lines.append(f"| {f.label} | {_fmt(f.value)} {f.unit} | {_fmt(f.baseline)} | "
                     f"{_fmt(f.ratio) + 'x' if f.ratio is not None else ''} | {f.target} | {holds} |")
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in bench.stages.items())
    start, end = bench.extra["machine_start"], bench.extra["machine_end"]
    lines += ["", f"stages: {stages}",
              f"machine: {start['cores']} cores, {start['memory_gb']} GB; load average "
              f"{start['load_average']} at start, {end['load_average']} at end"]
    return "\n".join(lines)


# -- live phase (make live) ------------------------------------------------------------------
LIVE_RATE = 2000.0
LIVE_DURATION_S = 60.0
LIVE_SEARCH = (4000.0, 8000.0, 16000.0, 32000.0)
LIVE_NARROWING = 2
"""Halvings of the interval between the rate that held and the one that fell behind."""


def _live_run(s: Settings, profile: str | None, scratch: Path, rate: float, duration_s: float,
              logs: Path | None) -> dict[str, Any]:
    """One ``scripts/live.py`` run at ``rate`` for ``duration_s`` on the bench's broker, with topics
    and a lake of its own; the backlog after each batch that ended while the producers ran."""
    import re

    from website_activity.adapters.topics import create_topics

    tag = uuid.uuid4().hex[:6]
    overrides = scratch_overrides(scratch / f"live-{int(rate)}-{tag}", profile)
    overrides["topics.names"] = [f"live-a-{tag}", f"live-b-{tag}"]
    run_settings = load_config(profile, {**overrides, "kafka.port": s["kafka"]["port"]})
    create_topics(run_settings)
    env = env_for(overrides)
    args = [sys.executable, str(repo_root() / "scripts" / "live.py"), "--port", str(s["kafka"]["port"]),
            "--rate", str(rate), "--duration", str(duration_s), "--no-view"]
    args += ["--profile", profile] if profile else []
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the producers start when the view line (or the first batch) is printed
        lines.append((time.monotonic() - started, line.rstrip()))
    proc.wait(timeout=3600)
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"live-{int(rate)}.log").write_text("\n".join(ln for _, ln in lines) + "\n", encoding="utf-8")
    if proc.returncode != 0:
        raise PipelineError(f"live at {rate:.0f}/s exited with code {proc.returncode}: "
                            f"{lines[-1][1] if lines else ''}")
    manifest = require_manifest(produce_manifest_path(run_settings), ProduceManifest)
    summary = require_manifest(ingest_summary_path(run_settings), IngestSummary)
    produce_seconds = max(t["seconds"] for t in manifest.topics)
    batch_lines = [(t, ln) for t, ln in lines if ln.startswith("live: batch ")]
    first_t = batch_lines[0][0] - float(re.search(r"in ([\d.]+)s", batch_lines[0][1]).group(1)) if batch_lines else 0.0
    end_of_production = first_t + produce_seconds
    backlog = [int(m.group(1).replace(",", "")) for t, ln in batch_lines
               if t <= end_of_production and (m := re.search(r"backlog ([\d,]+)", ln))]
    batch_records = [(int(m.group(1).replace(",", "")), float(m.group(2))) for _, ln in batch_lines
                     if (m := re.search(r": ([\d,]+) records in ([\d.]+)s", ln))]
    return {"rate": rate, "manifest": manifest, "summary": summary, "backlog": backlog, "batch_records": batch_records,
            "batches": len(batch_lines), "seconds": round(time.monotonic() - started, 1),
            "drain_s": round(lines[-1][0] - end_of_production, 1) if lines else None}


def _backlog_grows(run: dict[str, Any]) -> bool:
    """The backlog grew while the producers ran: the median of its second half (after the cold
    first batch) is above the median of its first half by more than two seconds of traffic, or
    there was no second batch. Halves, not the first and last values: the backlog swings with
    the batches that update gold (every ``ingest.gold_interval_s``), and one such swing at the
    end of a 4,000/s run that held for a minute (backlog 12k-25k, then 37k) read as growth."""
    b = run["backlog"][1:]
    if len(b) < 2:
        return True
    half = len(b) // 2
    return statistics.median(b[-half:]) > statistics.median(b[:half]) + 2 * run["rate"]


def _throughput(run: dict[str, Any]) -> float:
    """Records per second of the ingest's own batches, the cold first one left out when there are others:
    with a growing backlog (full batches) that is the highest rate it keeps up with."""
    batches = run["batch_records"][1:] or run["batch_records"]
    seconds = sum(sec for _, sec in batches)
    return sum(n for n, _ in batches) / seconds if seconds else 0.0


def search_sustained(first: dict[str, Any], run_at: Callable[[float], dict[str, Any]],
                     search: Sequence[float], quick: bool) -> tuple[float, list[dict[str, Any]]]:
    """The highest rate at which the backlog did not grow, from the first live run (at its
    ``rate``) and the runs ``run_at(rate)`` makes; and those runs.

    While the backlog holds, the rate doubles through ``search``; at the first rate where it
    grows, :data:`LIVE_NARROWING` runs halve the interval between the last rate that held and
    the lowest that fell behind (each halfway, rounded to a thousand): 8,000 held and 16,000 fell
    behind -> 12,000, then 10,000 or 14,000. When the first run already falls behind: one run at 90 % of its
    throughput to confirm it (not ``quick``); ``quick`` runs only the first.
    """
    runs: list[dict[str, Any]] = []
    if not _backlog_grows(first):
        sustained, failed = first["rate"], None
        for r in search:
            run = run_at(r)
            runs.append(run)
            if _backlog_grows(run):
                failed = r
                break
            sustained = r
        for _ in range(0 if quick or failed is None else LIVE_NARROWING):
            mid = round((sustained + failed) / 2, -3)
            if not sustained < mid < failed:
                break
            run = run_at(mid)
            runs.append(run)
            if _backlog_grows(run):
                failed = mid
            else:
                sustained = mid
    else:
        sustained = round(0.9 * _throughput(first), -1)
        if not quick and sustained >= 100:
            run = run_at(sustained)
            runs.append(run)
            if _backlog_grows(run):
                sustained = round(0.9 * min(_throughput(run), sustained), -1)
    return sustained, runs


def live_phase(bench: Any, s: Settings, profile: str | None, scratch: Path, logs: Path | None = None, *,
               rate: float = LIVE_RATE, duration_s: float = LIVE_DURATION_S,
               search: tuple[float, ...] = LIVE_SEARCH) -> None:
    """``make live`` at ``rate`` for ``duration_s``: the latency percentiles over the run (Kafka
    append -> silver commit, from ``ingest.json``'s ``latency_s``), then the highest rate at which
    the backlog does not grow (:func:`search_sustained`): doubling from ``rate`` through ``search``
    while it holds, then two halvings of the interval to the first rate that fell behind; when ``rate`` already
    falls behind, one run at 90 % of the ingest's measured throughput to confirm it. A bench of
    fewer than 1M events (tests, ``QUICK``) makes one 30 s run and estimates the sustained rate
    from it (the throughput of its batches, or ``rate`` if it kept up)."""
    quick = bench.events < 1_000_000
    if quick:
        duration_s, search = min(duration_s, 30.0), ()
    first = _live_run(s, profile, scratch, rate, duration_s, logs)
    runs = [first]
    lat = first["summary"].latency_s or {}
    for q in ("p50", "p95", "p99"):
        if lat.get(q) is not None:
            f = bench.add(f"live_latency_{q}_s", f"live latency {q} at {rate:,.0f}/s", lat[q], "s",
                          target="<= 5 s (goal 2 s)" if q == "p95" else "")
            if q == "p95":
                f.holds = lat[q] <= 5.0
    sustained, more = search_sustained(first, lambda r: _live_run(s, profile, scratch, r, duration_s, logs),
                                       search, quick)
    runs += more
    f = bench.add("live_sustained_events_per_s", "live: highest rate with a steady backlog", max(sustained, 1.0),
                  "records/s", target=">= 10,000 (goal 30,000)")
    f.holds = sustained >= 10_000
    bench.extra["live"] = [{k: v for k, v in run.items() if k not in ("manifest", "summary")}
                           | {"live_rate": run["manifest"].live_rate,
                              "records": run["manifest"].records,
                              "quarantine_by_reason": run["summary"].quarantine_by_reason,
                              "reconciled": run["summary"].reconciled,
                              "latency_s": run["summary"].latency_s,
                              "throughput": round(_throughput(run), 1),
                              "grows": _backlog_grows(run)} for run in runs]
