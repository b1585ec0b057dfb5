"""Live mode (``make live``): the producers, the streaming ingest and a live view, together.

The producers run in live mode (:mod:`website_activity.stages.produce`: event times are the wall clock,
``RATE`` is the session rate) in a thread of this process; the streaming ingest runs with a
short processing-time trigger in the same process, with a :class:`Monitor` that

- prints one line per batch: records, rows/s, the latency p95 of the batch's silver records
  (from the ledger's ``latency_hist``: Kafka append time -> silver commit, 100 ms buckets) and
  the backlog left in the topics (Spark's ``StreamingQueryProgress``: latest minus end offsets);
- keeps the recent progress for the live view (:class:`LiveView`: a page on 127.0.0.1 that reads
  ``/data.json`` every few seconds; the lake's figures come from gold and silver, computed when
  the page asks, at most once per refresh).

Stopping (Ctrl-C, or ``DURATION``): the producers stop at their next quarter of a second and
flush; then the query stops between two batches, the records still in the topics are consumed
(``availableNow``) and the run is reconciled; the summary says what was sent and what landed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Mapping

from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError
from website_activity.simulate.generator import LIVE_RATE
from website_activity.stages.ingest import latency_percentiles

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DEFAULT_RATE = LIVE_RATE
"""Records per second of ``make live`` without ``RATE`` (below what 2 cores ingest, measured in docs/live.md)."""
TRIGGER_S = 1.0
"""The live query's processing-time trigger (``make stream`` keeps ``ingest.trigger_interval_s``)."""
VIEW_PORT = 8765
REFRESH_S = 3.0
"""The page asks for new figures this often; the lake is read at most this often."""
WINDOW_MIN = 10
"""The view's recent past: events per minute and the funnel of the last this many minutes."""
ACTIVE_S = 300
"""A session is active if it had an event in the last this many seconds."""


# -- pure helpers ---------------------------------------------------------------------------------
def _offsets(value: Any) -> dict[str, dict[str, int]]:
    """A source's offsets as Spark reports them (a JSON text or an object): {topic: {partition: offset}}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def backlog(progress: Mapping[str, Any], latest: Mapping[str, Mapping[str, int]] | None = None) -> int | None:
    """Records in the topics that the query has not read yet: ``latest`` (the broker's end offsets
    now, ``{topic: {partition: offset}}``) or else the latest offsets Spark saw when it planned the
    batch, minus the batch's end offsets; ``None`` if the source does not say."""
    total, known = 0, False
    for source in progress.get("sources") or []:
        end = _offsets(source.get("endOffset"))
        for topic, parts in (latest if latest is not None else _offsets(source.get("latestOffset"))).items():
            for part, offset in parts.items():
                done = end.get(topic, {}).get(part)
                if done is not None:
                    total += max(0, int(offset) - int(done))
                    known = True
    return total if known else None


def batch_line(stats: Mapping[str, Any], progress: Mapping[str, Any] | None,
               latest: Mapping[str, Mapping[str, int]] | None = None) -> str:
    """The terminal's line for one batch: records, rows/s, latency p95 and backlog (see :func:`backlog`)."""
    records, seconds = stats["records_read"], stats["seconds"]
    rate = records / seconds if seconds else 0.0
    lat = latency_percentiles([stats.get("latency_hist")])
    parts = [f"live: batch {stats['batch_id']}: {records:,} records in {seconds:.1f}s ({rate:,.0f} rows/s)",
             f"latency p95 {lat['p95']:.1f}s" if lat else "latency p95 -"]
    left = backlog(progress, latest) if progress else None
    parts.append(f"backlog {left:,}" if left is not None else "backlog -")
    if stats.get("quarantined"):
        parts.append(f"{stats['quarantined']:,} quarantined")
    return ", ".join(parts)


def health(progress: Mapping[str, Any] | None, latest: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, Any]:
    """The stream's own health for the view, from Spark's last progress report."""
    if not progress:
        return {}
    durations = progress.get("durationMs") or {}
    return {
        "batch_id": progress.get("batchId"),
        "input_rows": progress.get("numInputRows"),
        "input_rate": round(float(progress.get("inputRowsPerSecond") or 0.0), 1),
        "processing_rate": round(float(progress.get("processedRowsPerSecond") or 0.0), 1),
        "batch_duration_s": round((progress.get("batchDuration") or durations.get("triggerExecution") or 0) / 1000, 2),
        "backlog": backlog(progress, latest),
        "timestamp": progress.get("timestamp"),
    }


# -- the monitor: Spark's progress events and the ledger's batches --------------------------------
def _listener_base() -> type:
    from pyspark.sql.streaming import StreamingQueryListener

    return StreamingQueryListener


class Monitor:
    """Batches and progress reports of the live query; prints a line per batch (see the module).

    Use :meth:`listener` for ``run_ingest(listener=...)`` and :meth:`on_batch` for ``on_batch``.
    """

    def __init__(self, echo: Callable[[str], Any] | None = None, keep: int = 600,
                 latest: Callable[[], dict[str, dict[str, int]] | None] | None = None) -> None:
        self.echo = echo
        self.latest = latest or (lambda: None)
        self.lock = threading.Lock()
        self.batches: deque[dict[str, Any]] = deque(maxlen=keep)
        self.progress: deque[dict[str, Any]] = deque(maxlen=keep)
        self.totals = {"batches": 0, "records_read": 0, "silver": 0, "quarantined": 0, "duplicates_removed": 0}
        self.quarantine: dict[str, int] = {}
        self.hists: list[dict[str, int]] = []
        self._printed: set[int] = set()
        self._listener: Any = None

    def on_batch(self, stats: Any) -> None:
        doc = stats.to_dict() if hasattr(stats, "to_dict") else dict(stats)
        doc["latency_hist"] = doc.get("latency_hist") or getattr(stats, "latency_hist", None)
        with self.lock:
            self.batches.append(doc)
            self.totals["batches"] += 1
            for k in ("records_read", "silver", "quarantined", "duplicates_removed"):
                self.totals[k] += int(doc.get(k) or 0)
            for reason, n in (doc.get("quarantine_by_reason") or {}).items():
                self.quarantine[reason] = self.quarantine.get(reason, 0) + n
            if doc["latency_hist"]:
                self.hists.append(doc["latency_hist"])
        self._maybe_print(doc["batch_id"])

    def on_progress(self, progress: dict[str, Any]) -> None:
        with self.lock:
            self.progress.append(progress)
        if progress.get("batchId") is not None:
            self._maybe_print(int(progress["batchId"]))

    def _maybe_print(self, batch_id: int) -> None:
        """A batch's line once both its stats and its progress report are in (either order)."""
        with self.lock:
            stats = next((b for b in reversed(self.batches) if b["batch_id"] == batch_id), None)
            prog = next((p for p in reversed(self.progress) if p.get("batchId") == batch_id), None)
            if stats is None or prog is None or batch_id in self._printed or self.echo is None:
                return
            self._printed.add(batch_id)
        self.echo(batch_line(stats, prog, self.latest()))

    def latest_progress(self) -> dict[str, Any] | None:
        with self.lock:
            return self.progress[-1] if self.progress else None

    def latency(self, last: int | None = None) -> dict[str, float] | None:
        with self.lock:
            hists = self.hists[-last:] if last else list(self.hists)
        return latency_percentiles(hists)

    def listener(self) -> Any:
        """A ``StreamingQueryListener`` that hands each progress report (as a dict) to this monitor."""
        if self._listener is None:
            monitor = self

            class _Listener(_listener_base()):  # type: ignore[misc]
                def onQueryStarted(self, event: Any) -> None:
                    pass

                def onQueryProgress(self, event: Any) -> None:
                    try:
                        monitor.on_progress(json.loads(event.progress.json))
                    except Exception:  # a report we cannot read must not stop the stream
                        log.debug("unreadable progress report", exc_info=True)

                def onQueryIdle(self, event: Any) -> None:
                    pass

                def onQueryTerminated(self, event: Any) -> None:
                    pass

            self._listener = _Listener()
        return self._listener


class EndOffsets:
    """The topics' end offsets on the broker now (``{topic: {partition: offset}}``), for the backlog;
    ``None`` when the broker does not answer in time (the line then says what Spark saw)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: Any = None
        self.lock = threading.Lock()

    def __call__(self) -> dict[str, dict[str, int]] | None:
        from kafka import KafkaConsumer, TopicPartition

        from website_activity.adapters.topics import client_config

        s = self.settings
        try:
            with self.lock:
                if self.consumer is None:
                    self.consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers, enable_auto_commit=False,
                                                  request_timeout_ms=5000, **client_config(s))
                tps = [TopicPartition(t, p) for t in s.topics
                       for p in sorted(self.consumer.partitions_for_topic(t) or ())]
                ends = self.consumer.end_offsets(tps)
        except Exception:  # the figure is a hint; the stream's own errors are reported elsewhere
            log.debug("end offsets unavailable", exc_info=True)
            return None
        out: dict[str, dict[str, int]] = {}
        for tp, offset in ends.items():
            out.setdefault(tp.topic, {})[str(tp.partition)] = int(offset)
        return out

    def close(self) -> None:
        with self.lock:
            if self.consumer is not None:
                self.consumer.close()
                self.consumer = None


# -- the lake's figures for the view ----------------------------------------------------------
def lake_figures(spark: "SparkSession", settings: Settings, now: datetime | None = None,
                 window_min: int = WINDOW_MIN, active_s: int = ACTIVE_S) -> dict[str, Any]:
    """What the view shows from the lake: events per minute by device and action (gold), active
    sessions and the funnel of the last ``window_min`` minutes (silver). Two small Spark jobs; the
    date predicates prune Delta's partitions, the time ones its files."""
    from pyspark.sql import functions as F

    from website_activity.adapters.lake import is_table, read_delta

    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    lo = now - timedelta(minutes=window_min)
    lit = lambda t: F.lit(t.isoformat(sep=" ")).cast("timestamp")  # noqa: E731  (UTC, as the session)
    out: dict[str, Any] = {"per_minute": [], "active_sessions": 0, "funnel": {}, "window_min": window_min}
    gold, silver = settings.path("gold"), settings.path("silver")
    if is_table(gold):
        rows = (read_delta(spark, gold).where((F.col("event_date") >= F.lit(lo.date().isoformat()).cast("date"))
                                              & (F.col("window_start") >= lit(lo)))
                .groupBy("window_start", "device_type", "action_type").agg(F.sum("events").alias("events"))
                .orderBy("window_start").collect())
        out["per_minute"] = [{"minute": r.window_start.strftime("%H:%M"), "device": r.device_type,
                              "action": r.action_type, "events": int(r.events)} for r in rows]
    if is_table(silver):
        recent = read_delta(spark, silver).where(
            (F.col("event_date") >= F.lit(lo.date().isoformat()).cast("date")) & (F.col("timestamp") >= lit(lo)))
        url = F.col("page_url")
        per_session = recent.groupBy("session_id").agg(
            F.max("timestamp").alias("last"),
            F.max(F.when(url.contains("/product/"), 1).otherwise(0)).alias("product"),
            F.max(F.when(F.col("action_type") == "add_to_cart", 1).otherwise(0)).alias("cart"),
            F.max(F.when(url.endswith("/checkout"), 1).otherwise(0)).alias("checkout"),
            F.max(F.when(F.col("action_type") == "purchase", 1).otherwise(0)).alias("purchase"))
        r = per_session.agg(
            F.count(F.lit(1)).alias("sessions"), F.sum("product").alias("product"), F.sum("cart").alias("cart"),
            F.sum("checkout").alias("checkout"), F.sum("purchase").alias("purchase"),
            F.sum(F.when(F.col("last") >= lit(now - timedelta(seconds=active_s)), 1).otherwise(0)).alias("active"),
        ).collect()[0]
        out["active_sessions"] = int(r.active or 0)
        out["funnel"] = {"sessions": int(r.sessions or 0), "product_view": int(r.product or 0),
                         "add_to_cart": int(r.cart or 0), "checkout": int(r.checkout or 0),
                         "purchase": int(r.purchase or 0)}
    return out


# -- the view: a page and its data on 127.0.0.1 ------------------------------------------------------
class LiveView:
    """``/`` (the page, ``templates/live.html``: inline script and style, nothing from elsewhere) and
    ``/data.json`` (:meth:`snapshot`) on 127.0.0.1, from a thread of its own."""

    def __init__(self, monitor: Monitor, figures: Callable[[], dict[str, Any]], port: int = VIEW_PORT,
                 refresh_s: float = REFRESH_S, produced: Callable[[], dict[str, Any]] | None = None) -> None:
        self.monitor, self.figures, self.refresh_s = monitor, figures, refresh_s
        self.produced = produced or (lambda: {})
        self._lake: dict[str, Any] = {}
        self._lake_at = 0.0
        self._lake_lock = threading.Lock()
        self.page = resources.files("website_activity").joinpath("templates/live.html").read_bytes()
        view = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                path = self.path.split("?")[0]
                if path in ("/", "/index.html"):
                    body, kind = view.page, "text/html; charset=utf-8"
                elif path == "/data.json":
                    body, kind = json.dumps(view.snapshot(), default=str).encode(), "application/json"
                else:
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", kind)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # requests are not worth a terminal line
                pass

        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise PipelineError(f"the live view cannot listen on 127.0.0.1:{port} ({exc.strerror}): "
                                "give another port with --view-port") from exc
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="live-view", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def lake(self) -> dict[str, Any]:
        """The lake's figures, read again at most every ``refresh_s`` (one reader at a time)."""
        with self._lake_lock:
            if time.monotonic() - self._lake_at >= self.refresh_s:
                try:
                    self._lake = {**self.figures(), "error": None}
                except Exception as exc:  # the view says so; the stream goes on
                    log.warning("live view: cannot read the lake: %s", exc)
                    self._lake = {**self._lake, "error": str(exc).splitlines()[0][:200]}
                self._lake_at = time.monotonic()
            return self._lake

    def snapshot(self) -> dict[str, Any]:
        m = self.monitor
        with m.lock:
            totals, quarantine = dict(m.totals), dict(sorted(m.quarantine.items()))
            batches = [{k: b.get(k) for k in ("batch_id", "records_read", "silver", "quarantined", "seconds")}
                       for b in list(m.batches)[-20:]]
        return {"now": datetime.now(timezone.utc).isoformat(timespec="seconds"), "totals": totals,
                "quarantine": quarantine, "health": health(m.latest_progress(), m.latest()),
                "latency_s": m.latency(last=30), "batches": batches, "produced": self.produced(),
                "lake": self.lake(), "refresh_s": self.refresh_s}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class LiveResult:
    """What a live run sent and landed."""

    produce: dict[str, Any]
    ingest: dict[str, Any]
    latency_s: dict[str, float] | None
    seconds: float
    view_url: str | None = None
    batches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def run_live(spark: "SparkSession", settings: Settings, *, rate: float | None = DEFAULT_RATE,
             duration_s: float | None = None, seed: int | None = None, trigger_s: float = TRIGGER_S,
             view_port: int | None = VIEW_PORT, stop: threading.Event | None = None,
             echo: Callable[[str], Any] | None = None, warm_up: bool = True) -> LiveResult:
    """Run the producers (live mode) and the streaming ingest until ``stop`` or ``duration_s``.

    Args:
        spark: The session of the ingest.
        settings: The configuration.
        rate: Records per second of both producers together (``None``: :data:`DEFAULT_RATE`).
        duration_s: Produce for this long (``None``: until ``stop``).
        seed: The producers' seed (default ``run.seed``; the stream is not reproducible anyway:
            its times are the wall clock's).
        trigger_s: The query's processing-time trigger.
        view_port: Serve the live view there (0: any free port; ``None``: no view).
        stop: Set it (Ctrl-C) to stop: producers flush, the ingest drains the topics and stops.
        echo: Where the per-batch lines go.
        warm_up: Before the producers start, run one batch of generated records through ingest
            into a scratch lake (:func:`website_activity.stages.ingest.warm_up`): the first batch of
            traffic then finds Spark warm, and the latency measures the stream, not its start.

    Raises:
        PipelineError: A producer failed, or the ingest failed or does not reconcile.
    """
    from website_activity.stages.ingest import run_ingest
    from website_activity.stages.ingest import warm_up as warm_up_ingest
    from website_activity.stages.produce import run_produce

    if duration_s is None and stop is None:
        raise PipelineError("a live run needs a duration or a way to stop it")
    stop = stop or threading.Event()
    seed = settings["run"]["seed"] if seed is None else seed
    ends = EndOffsets(settings)
    monitor = Monitor(echo, latest=ends)
    produced: dict[str, Any] = {}
    producers_done = threading.Event()

    def producers() -> None:
        try:
            produced["run"] = run_produce(settings, None, seed, duration=duration_s, rate=rate, start="now",
                                          live=True, stop=stop)
        except BaseException as exc:  # reported after the ingest has drained what did arrive
            produced["error"] = exc
        finally:
            producers_done.set()

    view = None
    if view_port is not None:
        view = LiveView(monitor, lambda: lake_figures(spark, settings), view_port,
                        produced=lambda: {"rate": rate, "running": not producers_done.is_set()})
        if echo:
            echo(f"live: view on {view.url} (refreshes every {REFRESH_S:.0f}s); Ctrl-C stops everything")
    if warm_up and not stop.is_set():
        if echo:
            echo("live: warming up Spark (one batch of generated records into a scratch lake)")
        seconds = warm_up_ingest(spark, settings).seconds
        if echo:
            echo(f"live: warm after {seconds:.1f}s; starting the producers")
    t0 = time.monotonic()
    thread = threading.Thread(target=producers, name="producers", daemon=True)
    thread.start()
    try:
        result = run_ingest(spark, settings, stream=True, stop=producers_done, trigger_s=trigger_s, drain=True,
                            on_batch=monitor.on_batch, listener=monitor.listener())
    finally:
        stop.set()  # an ingest failure stops the producers too: nothing left running
        thread.join(timeout=120)
        if view is not None:
            view.close()
        ends.close()
    if "error" in produced:
        exc = produced["error"]
        raise PipelineError(f"live: the producers failed: {exc}") from exc
    summary = result.summary
    latency = summary.get("latency_s") or monitor.latency()
    with monitor.lock:
        reasons = dict(sorted(monitor.quarantine.items()))
    lag = max((t.get("max_lag_s", 0) for t in produced["run"].manifest["topics"]), default=0)
    return LiveResult(produced["run"].manifest, summary, latency, time.monotonic() - t0,
                      view.url if view else None, result.batches,
                      {"quarantine_by_reason": reasons, "rate": rate,
                       "max_lag_s": lag})


def summary_lines(r: LiveResult) -> list[str]:
    """What the terminal says at the end of a live run."""
    p, s = r.produce, r.ingest
    reasons = ", ".join(f"{k} {v:,}" for k, v in r.extra.get("quarantine_by_reason", {}).items()) or "none"
    run = s.get("run", {})
    lat = r.latency_s
    lines = [
        f"live: sent {p['sent']:,} of {p['records']:,} records ({p['events']:,} events + faults, {p['failed']} failed) "
        f"in {p['seconds']:.1f}s: {p.get('live_rate', 0):,.0f} records/s of event time (asked "
        f"{r.extra.get('rate') or 'the configured sessions'}), slowest send {r.extra.get('max_lag_s', 0):.1f}s late",
        f"live: landed {run.get('records_read', 0):,} records in {r.batches} batches: {run.get('silver', 0):,} to "
        f"silver, {run.get('quarantined', 0):,} quarantined ({reasons}), "
        f"{run.get('duplicates_removed', 0):,} duplicates removed; lake "
        f"{'reconciled' if s.get('reconciled') else 'NOT reconciled'}",
        ("live: latency Kafka append -> silver commit: " + ", ".join(f"{k} {v:.1f}s" for k, v in lat.items()))
        if lat else "live: latency not measured (the ledger has no latency histograms)",
    ]
    return lines
