"""Two producers, one process per topic, sending seeded events as JSON (key: ``session_id``).

Producer *i* sends its share of ``EVENTS`` to topic *i*, generated from ``(seed, topic)``, so
the same seed and configuration send the same records. Every send is acknowledged by the
broker (``acks=all``, idempotent producer); a record that is not acknowledged is counted as
failed and makes the run fail, never silently vanish.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from website_activity.config import Settings
from website_activity.errors import PipelineError
from website_activity.generator import EventGenerator
from website_activity.topics import no_broker_message

log = logging.getLogger(__name__)


@dataclass
class ProduceResult:
    topic: str
    requested: int
    sent: int
    failed: int
    seconds: float
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def split_events(total: int, parts: int) -> list[int]:
    """Share ``total`` events between ``parts`` producers as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def encode(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def produce_topic(settings: Settings, topic: str, count: int, seed: int) -> ProduceResult:
    """Send ``count`` generated events to ``topic`` and wait for every acknowledgement.

    Raises:
        PipelineError: No broker answers, or the topic does not exist.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError, KafkaTimeoutError

    k, p = settings["kafka"], settings["producer"]
    timeout_ms = k["request_timeout_s"] * 1000
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, client_id=f"website-activity-{topic}",
            acks=p["acks"] if p["acks"] == "all" else int(p["acks"]),
            linger_ms=p["linger_ms"], batch_size=p["batch_size"],
            compression_type=p["compression_type"] or None,
            bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms, delivery_timeout_ms=max(4 * timeout_ms, 60000),
        )
    except (KafkaError, OSError) as exc:
        raise PipelineError(no_broker_message(settings, exc)) from exc

    try:
        try:
            if not producer.partitions_for(topic):
                raise PipelineError(f"topic '{topic}' does not exist: run 'make topics'")
        except KafkaTimeoutError as exc:
            raise PipelineError(f"topic '{topic}' not found on {settings.bootstrap_servers} within "
                                f"{k['request_timeout_s']}s: run 'make topics'") from exc
        gen = EventGenerator.from_settings(settings, seed, topic)
        key_field = p["key_field"]
        state = {"acked": 0, "failed": 0, "error": ""}

        def on_ok(_meta) -> None:
            state["acked"] += 1

        def on_error(exc: BaseException) -> None:
            state["failed"] += 1
            state["error"] = state["error"] or f"{type(exc).__name__}: {exc}"

        start = time.monotonic()
        next_log = start + 5
        for n, event in enumerate(gen.events(count), 1):
            try:
                fut = producer.send(topic, key=str(event[key_field]).encode(), value=encode(event))
            except KafkaError as exc:  # buffer full past max_block_ms, broker gone, ...
                on_error(exc)
                continue
            fut.add_callback(on_ok).add_errback(on_error)
            if time.monotonic() > next_log:
                log.info("%s: %d/%d sent", topic, n, count)
                next_log += 5
        producer.flush(timeout=max(4 * timeout_ms, 60000) / 1000)
        seconds = time.monotonic() - start
        unacked = count - state["acked"] - state["failed"]
        return ProduceResult(topic, count, state["acked"], state["failed"] + unacked, seconds,
                             state["error"] or ("flush timed out" if unacked else ""))
    finally:
        producer.close(timeout=10)


def _worker(args: tuple) -> ProduceResult | str:
    settings, topic, count, seed = args
    try:
        return produce_topic(settings, topic, count, seed)
    except PipelineError as exc:
        return str(exc)


def run_produce(settings: Settings, events: int, seed: int) -> list[ProduceResult]:
    """Run one producer process per topic in parallel and write a manifest of what was sent.

    Raises:
        PipelineError: A producer could not start, or some records were not acknowledged.
    """
    topics = settings.topics
    jobs = [(settings, t, n, seed) for t, n in zip(topics, split_events(events, len(topics)))]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(jobs)) as pool:
        outcomes = pool.map(_worker, jobs)
    errors = [o for o in outcomes if isinstance(o, str)]
    if errors:
        raise PipelineError(errors[0])
    results = [o for o in outcomes if isinstance(o, ProduceResult)]
    write_manifest(settings, events, seed, results)
    failed = sum(r.failed for r in results)
    if failed:
        first = next(r.first_error for r in results if r.failed)
        raise PipelineError(f"{failed} of {events} events were not acknowledged by the broker ({first})")
    return results


def manifest_path(settings: Settings) -> Path:
    return settings.path("runs") / "produce.json"


def write_manifest(settings: Settings, events: int, seed: int, results: list[ProduceResult]) -> None:
    path = manifest_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "events": events, "seed": seed, "sent": sum(r.sent for r in results),
        "failed": sum(r.failed for r in results), "topics": [asdict(r) for r in results],
    }, indent=2))
