"""Two producers, one process per topic, sending the generator's records (key: ``session_id``).

Producer *i* owns every *i*-th user of the population (see :mod:`website_activity.simulate.generator`),
so a session and all of its records stay in topic *i*, and in one partition (the key's). Modes:
bounded (``events``: that many valid events in total, plus the injected faults), timed
(``duration`` seconds) and rate-limited (``rate`` records per second in total, with either).
Live (``live``, what ``--start now`` and ``make live`` use): event times are the wall clock, each
record is sent once the wall clock has reached its event time (within :data:`LIVE_TICK_S`), and
``rate`` sets the generator's session rate (so the records per second) instead of pacing a
simulated clock; without ``rate``, :data:`~website_activity.simulate.generator.LIVE_RATE`.

Delivery: ``acks=all``, idempotent producer, retries, ``lz4`` compression, large batches with a
short linger. Sends carry no per-record callback: each chunk's futures are kept and checked in
bulk; a record that is not acknowledged (an error, or still pending when the final flush times
out) is counted as failed, reported, and makes the run fail: nothing is silently lost.
The partition of each key is computed once per session (the default partitioner's murmur2).

Each producer writes the ground truth of its sessions to ``paths.ground_truth/<topic>.parquet``;
the run writes a manifest to ``paths.runs/produce.json``.
"""

from __future__ import annotations

import bisect
import json
import logging
import multiprocessing
import queue
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from website_activity.adapters.files import atomic_path, write_manifest
from website_activity.adapters.topics import BootstrapErrors, client_config, connect_failure
from website_activity.core.catalog import ground_truth_path, produce_manifest_path
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError
from website_activity.core.manifests import ProduceManifest
from website_activity.simulate.generator import CHUNK, FAULT_KINDS, EventGenerator, live_event_rate, parse_start

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.5
LIVE_TICK_S = 0.05
"""Live mode: the producer wakes at most this often and sends every record whose time has come,
instead of once per record (1,000 wake-ups a second per producer at the default rate). Records
wait in the client's batch for up to ``kafka.linger_ms`` anyway."""


@dataclass
class ProduceResult:
    """What one producer sent."""

    topic: str
    events: int = 0            # valid events generated
    records: int = 0           # records handed to the producer (events + extra fault records)
    sent: int = 0              # records acknowledged by the broker
    failed: int = 0            # records not acknowledged
    bytes: int = 0             # bytes of the values
    first_event_time: str | None = None
    last_event_time: str | None = None
    seconds: float = 0.0
    rate: float = 0.0          # records acknowledged per second
    faults: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    live: bool = False
    max_lag_s: float = 0.0     # live: the most a record was sent after its event time
    live_rate: float = 0.0     # live: records per second of event time (the rate asked for)


def split_events(total: int, parts: int) -> list[int]:
    """Share ``total`` events between ``parts`` producers as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def encode(event: dict) -> bytes:
    """An event as the generator encodes it: compact JSON, fields in schema order."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def make_producer(settings: Settings, client_id: str) -> Any:
    """A kafka-python producer configured by ``producer:``, or a clear error when no broker answers."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    k, p = settings["kafka"], settings["producer"]
    timeout_ms = k["request_timeout_s"] * 1000
    security = client_config(settings)
    seen = BootstrapErrors()
    try:
        with seen:
            return KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers, client_id=client_id,
                acks=p["acks"] if p["acks"] == "all" else int(p["acks"]), enable_idempotence=True,
                linger_ms=p["linger_ms"], batch_size=p["batch_size"],
                max_request_size=max(1048576, 2 * settings["ingest"]["max_record_bytes"]),
                compression_type=p["compression_type"] or None,
                bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms,
                request_timeout_ms=timeout_ms, delivery_timeout_ms=max(4 * timeout_ms, 60000),
                **security,
            )
    except (KafkaError, OSError) as exc:
        raise PipelineError(connect_failure(settings, exc, seen.errors)) from exc
    except (ImportError, AssertionError, ValueError) as exc:  # e.g. a codec whose package is missing
        raise PipelineError(f"cannot configure the producer (producer: {dict(p)}): {exc}") from exc


def check_topic(producer: Any, settings: Settings, topic: str) -> list[int]:
    """The topic's partitions, or a clear error suggesting ``make topics``."""
    from kafka.errors import KafkaTimeoutError

    try:
        partitions = producer.partitions_for(topic)
    except KafkaTimeoutError as exc:
        raise PipelineError(f"topic '{topic}' not found on {settings.bootstrap_servers} within "
                            f"{settings['kafka']['request_timeout_s']}s: run 'make topics'") from exc
    if not partitions:
        raise PipelineError(f"topic '{topic}' does not exist: run 'make topics'")
    return sorted(partitions)


class _Appender:
    """``producer.send(topic, value, key, partition)`` without send()'s per-call work.

    kafka-python's ``send`` re-validates headers and types, re-reads the metadata, estimates the
    size and formats a debug line (``str(producer)``) for every record: about 40 % of its cost here.
    Our records are bytes with a known partition and a size checked by the generator, so the
    pinned kafka-python's accumulator is fed directly, as ``send`` does after its checks, and the
    sender is woken the same way. Without those internals (another kafka-python), ``send`` is used.
    """

    def __init__(self, producer: Any, topic: str, partitions: list[int]) -> None:
        from kafka.structs import TopicPartition

        self.producer = producer
        self.topic = topic
        self.tps = {p: TopicPartition(topic, p) for p in partitions}
        acc, sender = getattr(producer, "_accumulator", None), getattr(producer, "_sender", None)
        self.fast = acc is not None and sender is not None and callable(getattr(acc, "append", None))
        self.max_size = producer.config.get("max_request_size", 1048576) - 1024

    def __call__(self, key: bytes, value: bytes, partition: int) -> Any:
        if not self.fast or len(value) > self.max_size:
            return self.producer.send(self.topic, value=value, key=key, partition=partition)
        future, full, new_batch, _ = self.producer._accumulator.append(self.tps[partition], None, key, value, [])
        if full or new_batch:
            self.producer._sender.wakeup()
        return future


class _Tally:
    """Acknowledgements counted from the futures, oldest first, without per-record callbacks."""

    def __init__(self) -> None:
        self.pending: deque = deque()
        self.acked = 0
        self.failed = 0
        self.error = ""

    def fail(self, exc: BaseException, n: int = 1) -> None:
        self.failed += n
        self.error = self.error or f"{type(exc).__name__}: {exc}"

    def drain(self, final: bool = False) -> None:
        pending = self.pending
        while pending:
            f = pending[0]
            if not f.is_done:
                if not final:
                    return
                self.fail(TimeoutError("not acknowledged before the final flush timed out"))
            elif f.exception is not None:
                self.fail(f.exception)
            else:
                self.acked += 1
            pending.popleft()


def produce_topic(settings: Settings, topic: str, events: int | None, seed: int, *,
                  duration: float | None = None, rate: float | None = None, start: str | None = None,
                  progress: Any = None, live: bool = False, stop: Any = None) -> ProduceResult:
    """Send one producer's records to ``topic`` and wait for every acknowledgement.

    Args:
        settings: The configuration.
        topic: One of ``topics.names`` (its position picks the producer's users).
        events: Valid events to send; ``None`` with ``duration``: until the time is up.
        seed: The run's seed.
        duration: Stop after this many seconds (at a chunk boundary).
        rate: Records per second for this producer (``None``: as fast as possible).
        start: The simulated clock's start (``now`` or ISO-8601); default ``generator.start_time``.
        progress: A queue for ``(topic, events, records, acked, failed)`` updates, or ``None``.
        live: Live mode (see the module docstring): ``start`` should be about now.
        stop: An event (``multiprocessing.Event``): set, the producer stops at the next chunk
            (a quarter of a second in live mode) and flushes.

    Raises:
        PipelineError: No broker answers, or the topic does not exist.
    """
    producer = make_producer(settings, f"website-activity-{topic}")
    result = ProduceResult(topic)
    tally = _Tally()
    try:
        partitions = check_topic(producer, settings, topic)
        gen, live_rate = _generator(settings, topic, events, seed, duration=duration, rate=rate, start=start,
                                    live=live)
        pace = live_rate if live_rate is not None else rate
        size = CHUNK if pace is None else max(16, min(CHUNK, int(pace / 4)))
        send = _Appender(producer, topic, partitions)
        part_of: dict[bytes, int] = {}
        span = _Span()
        t0 = time.monotonic()
        next_report = t0
        for chunk in gen.chunks(events, size=size):
            _send_chunk(send, chunk, part_of, partitions, tally, result, rate, t0)
            _count_chunk(result, chunk, span)
            if len(part_of) > 100_000:
                part_of.clear()
            tally.drain()
            now = time.monotonic()
            if progress is not None and now >= next_report:
                progress.put((topic, result.events, result.records, tally.acked, tally.failed))
                next_report = now + PROGRESS_EVERY_S
            if duration is not None and now - t0 >= duration:
                break
            if stop is not None and stop.is_set():
                break
        producer.flush(timeout=max(4 * settings["kafka"]["request_timeout_s"], 60))
        tally.drain(final=True)
        _finish(result, gen, tally, span, time.monotonic() - t0, live)
        write_ground_truth(settings, topic, gen)
        if progress is not None:
            progress.put((topic, result.events, result.records, tally.acked, tally.failed))
        return result
    finally:
        producer.close(timeout=10)


def _generator(settings: Settings, topic: str, events: int | None, seed: int, *, duration: float | None,
               rate: float | None, start: str | None, live: bool) -> tuple[EventGenerator, float | None]:
    """The topic's generator, and its live rate (valid events per second; ``None``: a replay)."""
    # A replay of a given number of events spans generator.span_h; a paced or timed run
    # keeps generator.sessions_per_hour (live mode).
    span_events = events if rate is None and duration is None and not live else None
    live_rate = None
    if live and start is None:  # this producer's own now, once it is ready: nothing starts late
        start = parse_start("now").isoformat(timespec="milliseconds")
    if live:  # ``rate`` is this producer's share already; without one, the default's share
        live_rate = live_event_rate(settings["generator"], rate, 1 if rate else len(settings.topics))
    gen = EventGenerator.from_settings(settings, seed, topic, start, events=span_events, live_rate=live_rate)
    return gen, live_rate


def _send_chunk(send: Any, chunk: Any, part_of: dict, partitions: list[int], tally: _Tally,
                result: ProduceResult, rate: float | None, t0: float) -> None:
    """Send a chunk: live (each record at its time), paced (``rate``), or at once."""
    if chunk.emit_ms is not None:
        lag = _send_live(send, chunk, part_of, partitions, tally)
        result.max_lag_s = max(result.max_lag_s, lag)
    elif rate is None:
        _send_records(send, chunk.keys, chunk.values, part_of, partitions, tally)
    else:
        _send_paced(send, chunk, part_of, partitions, tally, rate, t0, result.records)


@dataclass
class _Span:
    """The first and last event times (epoch ms) sent so far."""

    first_ms: int | None = None
    last_ms: int | None = None


def _count_chunk(result: ProduceResult, chunk: Any, span: _Span) -> None:
    result.events += chunk.counts["event"]
    result.records += len(chunk.values)
    result.bytes += sum(map(len, chunk.values))
    if chunk.first_ms is not None:
        span.first_ms = chunk.first_ms if span.first_ms is None else min(span.first_ms, chunk.first_ms)
        span.last_ms = chunk.last_ms if span.last_ms is None else max(span.last_ms, chunk.last_ms)


def _finish(result: ProduceResult, gen: EventGenerator, tally: _Tally, span: _Span, seconds: float,
            live: bool) -> None:
    """Fill in the result once every record is acknowledged or counted as failed."""
    result.seconds = seconds
    result.sent, result.failed, result.first_error = tally.acked, tally.failed, tally.error
    result.rate = result.sent / result.seconds if result.seconds > 0 else 0.0
    result.first_event_time, result.last_event_time = _iso(span.first_ms), _iso(span.last_ms)
    result.faults = {k: gen.counts.get(k, 0) for k in FAULT_KINDS}
    result.live, result.max_lag_s = live, round(result.max_lag_s, 3)
    if live and span.last_ms is not None:
        span_s = (span.last_ms - gen.start_ms) / 1000.0
        result.live_rate = round(result.records / span_s, 1) if span_s > 0 else 0.0


def _send_records(send: Any, keys: Any, values: Any, part_of: dict, partitions: list[int], tally: _Tally) -> None:
    """Send records now, each to its key's partition (the default partitioner's murmur2, computed
    once per key); a send that raises (broker gone, producer closed) is counted as failed."""
    from kafka.partitioner.default import murmur2

    n_part, pending = len(partitions), tally.pending
    for key, value in zip(keys, values):
        p = part_of.get(key)
        if p is None:
            p = part_of[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % n_part]
        try:
            pending.append(send(key, value, p))
        except Exception as exc:
            tally.fail(exc)


def _send_paced(send: Any, chunk: Any, part_of: dict, partitions: list[int], tally: _Tally,
                rate: float, t0: float, before: int) -> None:
    """Send a chunk no faster than ``rate`` records per second since ``t0``."""
    step = max(1, min(256, int(rate / 50)))
    for i in range(0, len(chunk.values), step):
        wait = t0 + (before + i) / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _send_records(send, chunk.keys[i:i + step], chunk.values[i:i + step], part_of, partitions, tally)


def _send_live(send: Any, chunk: Any, part_of: dict, partitions: list[int], tally: _Tally) -> float:
    """Send each record of a live chunk once the wall clock has reached its time (``chunk.emit_ms``),
    in ticks of at most :data:`LIVE_TICK_S`; the most seconds a record went out late (beyond a tick:
    the machine could not keep up)."""
    emits, n, i, lag = chunk.emit_ms, len(chunk.values), 0, 0.0
    keys, values = chunk.keys, chunk.values
    tick_ms = LIVE_TICK_S * 1000.0
    while i < n:
        now_ms = time.time() * 1000.0
        if emits[i] > now_ms:  # never early: an event time ahead of the clock is a future_time
            # the next tick, or the next record if it is further off: what is due then goes at once
            time.sleep(max(emits[i] - now_ms, tick_ms) / 1000.0)
            continue
        j = bisect.bisect_right(emits, now_ms, lo=i)
        lag = max(lag, (now_ms - emits[i]) / 1000.0)
        _send_records(send, keys[i:j], values[i:j], part_of, partitions, tally)
        i = j
    return lag


def write_ground_truth(settings: Settings, topic: str, gen: EventGenerator) -> Path:
    """Write (or update: same session ids are replaced) ``<ground_truth>/<topic>.parquet``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = ground_truth_path(settings, topic)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = gen.ground_truth(topic)
    if path.exists():
        old = pq.read_table(path)
        if old.schema.equals(table.schema):
            keep = pc.invert(pc.is_in(old["session_id"], value_set=table["session_id"]))
            table = pa.concat_tables([old.filter(keep), table])
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _worker(job: dict, progress: Any, results: Any) -> None:
    from website_activity.adapters.topics import quiet_kafka_connections

    quiet_kafka_connections()  # a spawned process: its stage's logging setup is not inherited
    settings = job.pop("settings")
    topic = job.pop("topic")
    if job.get("stop") is not None:  # live: Ctrl-C reaches the whole process group; the parent
        import signal                # sets ``stop`` and this producer flushes what it generated

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        results.put((topic, produce_topic(settings, topic, progress=progress, **job)))
    except PipelineError as exc:
        results.put((topic, str(exc)))
    except Exception as exc:  # an unexpected failure still ends in one line, not a hang
        results.put((topic, f"{type(exc).__name__}: {exc}"))


@dataclass
class ProduceRun:
    """The outcome of :func:`run_produce` (iterable over its per-topic results)."""

    results: list[ProduceResult]
    record: ProduceManifest

    @property
    def manifest(self) -> dict[str, Any]:
        """``produce.json`` as written (the record's document)."""
        return self.record.to_dict()

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> ProduceResult:
        return self.results[i]


def run_produce(settings: Settings, events: int | None, seed: int, *, duration: float | None = None,
                rate: float | None = None, start: str | None = None, progress: bool = False,
                live: bool | None = None, stop: Any = None) -> ProduceRun:
    """Run one producer process per topic in parallel and write the manifest.

    Args:
        events: Valid events in total (shared evenly); ``None`` only with ``duration``.
        duration: Seconds to produce for (with ``events`` too: whichever comes first).
        rate: Records per second in total (shared evenly); must be > 0.
        start: ``now`` or an ISO-8601 instant for the simulated clock.
        progress: Show a progress bar (rate, sent, acked, failed) on stderr.
        live: Live mode (wall-clock event times, ``rate`` as the session rate); ``None``: live
            when ``start`` is ``now``.
        stop: A ``threading.Event``: set (e.g. on Ctrl-C), the producers stop, flush and report.

    Raises:
        PipelineError: Bad options, a producer could not start, or records were not acknowledged.
    """
    if live is None:
        live = start is not None and start.strip().lower() == "now"
    _check_options(events, duration, rate, stop)
    if start is not None:
        start = parse_start(start).isoformat(timespec="milliseconds")
    topics = settings.topics
    ctx = multiprocessing.get_context("spawn")
    progress_q, results_q = ctx.Queue(), ctx.Queue()
    halt = ctx.Event() if stop is not None else None
    procs = _producer_processes(ctx, settings, events, seed, progress_q, results_q, duration=duration, rate=rate,
                                start=start, live=live, halt=halt)
    t0 = time.monotonic()
    for p in procs:
        p.start()
    bar = _Bar(events, progress)
    try:
        outcomes = _collect(procs, results_q, progress_q, bar, stop, halt)
    finally:
        bar.close()
        for p in procs:
            p.join(timeout=10)
    results = _results(outcomes, topics)
    manifest = produce_manifest(settings, events, seed, results, time.monotonic() - t0,
                                {"duration": duration, "rate": rate, "start": start, "live": live})
    write_manifest(produce_manifest_path(settings), manifest)
    if manifest.failed:
        first = next(r.first_error for r in results if r.failed)
        raise PipelineError(f"{manifest.failed} of {manifest.records} records were not acknowledged by the "
                            f"broker ({first}); manifest: {produce_manifest_path(settings)}")
    return ProduceRun(results, manifest)


def _check_options(events: int | None, duration: float | None, rate: float | None, stop: Any) -> None:
    if events is None and duration is None and stop is None:
        raise PipelineError("give a number of events or a duration")
    if events is not None and events < 0:
        raise PipelineError(f"events must be >= 0, got {events}")
    if duration is not None and duration <= 0:
        raise PipelineError(f"duration must be > 0 seconds, got {duration}")
    if rate is not None and rate <= 0:
        raise PipelineError(f"rate must be > 0 events per second, got {rate}")


def _producer_processes(ctx: Any, settings: Settings, events: int | None, seed: int, progress_q: Any,
                        results_q: Any, *, duration: float | None, rate: float | None, start: str | None,
                        live: bool, halt: Any) -> list[Any]:
    """One (not yet started) producer process per topic, with its share of the events and rate."""
    topics = settings.topics
    shares = split_events(events, len(topics)) if events is not None else [None] * len(topics)
    procs = []
    for topic, share in zip(topics, shares):
        job = {"settings": settings, "topic": topic, "events": share, "seed": seed, "duration": duration,
               "rate": rate / len(topics) if rate else None, "start": start, "live": live, "stop": halt}
        procs.append(ctx.Process(target=_worker, args=(job, progress_q, results_q), daemon=True))
    return procs


def _collect(procs: list[Any], results_q: Any, progress_q: Any, bar: "_Bar", stop: Any,
             halt: Any) -> dict[str, ProduceResult | str]:
    """Every producer's outcome (its result, or its one-line error), updating the bar meanwhile;
    a set ``stop`` is passed on to the producers (``halt``)."""
    outcomes: dict[str, ProduceResult | str] = {}
    while len(outcomes) < len(procs):
        try:
            topic, outcome = results_q.get(timeout=0.2)
            outcomes[topic] = outcome
        except queue.Empty:
            if halt is not None and stop.is_set():
                halt.set()
            if all(not p.is_alive() for p in procs):
                try:  # a result may still be in the pipe
                    topic, outcome = results_q.get(timeout=2)
                    outcomes[topic] = outcome
                    continue
                except queue.Empty:
                    raise PipelineError("a producer process died without a result") from None
        bar.update(progress_q)
    bar.update(progress_q)
    return outcomes


def _results(outcomes: dict[str, ProduceResult | str], topics: list[str]) -> list[ProduceResult]:
    """The results in topic order; the first producer's error raised."""
    errors = [outcomes[t] for t in topics if isinstance(outcomes[t], str)]
    if errors:
        raise PipelineError(errors[0])
    results = [outcomes[t] for t in topics]
    assert all(isinstance(r, ProduceResult) for r in results)
    return results


class _Bar:
    """One tqdm bar for all producers: valid events, rate, records acked and failed."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.state: dict[str, tuple[int, int, int, int]] = {}
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="ev", unit_scale=True, desc="produce", dynamic_ncols=True,
                            smoothing=0.1)

    def update(self, q: Any) -> None:
        changed = False
        while True:
            try:
                topic, *counts = q.get_nowait()
            except queue.Empty:
                break
            self.state[topic] = tuple(counts)
            changed = True
        if self.bar is not None and changed:
            events, records, acked, failed = (sum(c[i] for c in self.state.values()) for i in range(4))
            self.bar.update(events - self.bar.n)
            self.bar.set_postfix(sent=records, acked=acked, failed=failed, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def produce_manifest(settings: Settings, events: int | None, seed: int, results: list[ProduceResult],
                     seconds: float, options: dict) -> ProduceManifest:
    """``produce.json``'s record: the producers' results summed, the run's options."""
    faults = {k: sum(r.faults.get(k, 0) for r in results) for k in FAULT_KINDS}
    p = settings["producer"]
    return ProduceManifest(
        seed=seed,
        events=events if events is not None else sum(r.events for r in results),
        records=sum(r.records for r in results),
        sent=sum(r.sent for r in results),
        failed=sum(r.failed for r in results),
        faults=faults,
        bytes=sum(r.bytes for r in results),
        first_event_time=min((r.first_event_time for r in results if r.first_event_time), default=None),
        last_event_time=max((r.last_event_time for r in results if r.last_event_time), default=None),
        seconds=round(seconds, 3),
        rate=round(sum(r.sent for r in results) / seconds, 1) if seconds > 0 else 0.0,
        live_rate=round(sum(r.live_rate for r in results), 1),
        options={**options, "compression_type": p["compression_type"], "linger_ms": p["linger_ms"],
                 "batch_size": p["batch_size"]},
        ground_truth=[str(ground_truth_path(settings, r.topic)) for r in results],
        topics=[asdict(r) for r in results],
    )
