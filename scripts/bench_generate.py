"""How fast the generator and the two producers are, beside their baselines (run by hand; no test runs it).

1. naive: a generator that calls Faker for every field of every event and json.dumps each one
   (the original project's way), on one core;
2. generator: this project's generator, both producers' streams one after the other, generation
   and encoding to bytes, faults included, on one core;
3. producers: `run_produce` (two processes) into an embedded broker of its own (temp folder, free
   ports), every record acknowledged;
4. Kafka's own `org.apache.kafka.tools.ProducerPerformance` (from .jvm/tools, fetched by setup) on
   the same broker, same record count, same records (a payload file of our events), same acks,
   compression, linger and batch size.

Rates are per wall-clock second, and for 1-2 also per CPU second of the process (the machine may be
shared: CPU time says what one core does). Prints a table and writes reports/bench_generate.json.

    .venv/bin/python scripts/bench_generate.py --events 1000000 --producer-events 300000
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.produce import split_events


def naive_generate(n: int, seed: int, viewports: dict) -> list[bytes]:
    """The baseline: every field of every event from Faker, one json.dumps per event."""
    from faker import Faker

    fake = Faker()
    fake.seed_instance(seed)
    t = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    out = []
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
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - w, time.process_time() - c


def run_generator(settings, events: int, seed: int) -> tuple[int, int, float, list[bytes]]:
    """Both streams one after the other: (records, bytes, init seconds, a sample of valid values)."""
    from website_activity.generator import EventGenerator

    records = size = 0
    init = 0.0
    sample: list[bytes] = []
    for topic, n in zip(settings.topics, split_events(events, len(settings.topics))):
        t = time.process_time()
        gen = EventGenerator.from_settings(settings, seed, topic)
        init += time.process_time() - t
        for chunk in gen.chunks(n):
            records += len(chunk.values)
            size += sum(map(len, chunk.values))
            if len(sample) < 20000:
                sample += [v for v in chunk.values[:2000] if v.startswith(b'{"event_id"') and len(v) < 4096]
    return records, size, init, sample


def producer_performance(settings, jvm: Path, bootstrap: str, topic: str, count: int, payload: Path) -> dict:
    """Kafka's ProducerPerformance on our broker with our producer settings; its summary line parsed."""
    from website_activity.jvm import java_executable

    p = settings["producer"]
    props = [f"bootstrap.servers={bootstrap}", f"acks={p['acks']}", "enable.idempotence=true",
             f"linger.ms={p['linger_ms']}", f"batch.size={p['batch_size']}",
             f"compression.type={p['compression_type'] or 'none'}"]
    cmd = [java_executable(), "-Xmx512m", "-cp", f"{jvm}/*", "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(count), "--throughput", "-1",
           "--payload-file", str(payload), "--payload-delimiter", "\n", "--producer-props", *props]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if "records sent" in ln]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    # "N records sent, X records/sec (Y MB/sec), ... avg latency, ..."
    summary = lines[-1]
    return {"records_per_s": float(summary.split(" records sent, ")[1].split(" records/sec")[0]),
            "summary": summary.strip()}


@click.command()
@common_options
@click.option("--events", type=int, default=1_000_000, show_default=True, help="Events for the generator.")
@click.option("--naive-events", type=int, default=20_000, show_default=True, help="Events for the naive baseline.")
@click.option("--producer-events", type=int, default=300_000, show_default=True,
              help="Events for the producers and for ProducerPerformance (0: skip both).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="JSON output (default: paths.reports/bench_generate.json).")
@main_wrapper("bench-generate")
def main(profile, port, events, naive_events, producer_events, seed, out):
    """Generator and producers against a naive generator and Kafka's ProducerPerformance."""
    settings = settings_from(profile, port)
    viewports = settings["validation"]["viewports"]
    report: dict = {"events": events, "seed": seed, "machine_cores": __import__("os").cpu_count()}

    naive, wall, cpu = timed(naive_generate, naive_events, seed, viewports)
    report["naive"] = {"events": naive_events, "events_per_s": naive_events / wall,
                       "events_per_cpu_s": naive_events / cpu, "avg_record_bytes": sum(map(len, naive)) / len(naive)}
    click.echo(f"naive      {naive_events:>9,} events  {naive_events / wall:>10,.0f}/s  "
               f"{naive_events / cpu:>10,.0f}/cpu-s")

    (records, size, init, sample), wall, cpu = timed(run_generator, settings, events, seed)
    report["generator"] = {"events": events, "records": records, "bytes": size, "init_cpu_s": init,
                           "events_per_s": events / (wall - init), "events_per_cpu_s": events / (cpu - init),
                           "events_per_s_with_init": events / wall, "avg_record_bytes": size / records}
    ratio = report["generator"]["events_per_cpu_s"] / report["naive"]["events_per_cpu_s"]
    report["ratio_generator_vs_naive"] = ratio
    click.echo(f"generator  {events:>9,} events  {events / (wall - init):>10,.0f}/s  "
               f"{events / (cpu - init):>10,.0f}/cpu-s  ({ratio:.0f}x naive per CPU second; "
               f"setup {init:.1f}s)")

    if producer_events:
        report.update(bench_producers(settings, producer_events, seed, sample, size / records))

    out = out or settings.path("reports") / "bench_generate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    click.echo(f"bench-generate: wrote {out}")


def bench_producers(settings, events: int, seed: int, sample: list[bytes], avg_bytes: float) -> dict:
    from website_activity.broker import EmbeddedBroker, free_port
    from website_activity.produce import run_produce
    from website_activity.topics import create_topics

    scratch = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    broker = EmbeddedBroker(home=scratch / "kafka", jvm_dir=settings.path("jvm") / "broker", port=free_port(),
                            controller_port=free_port(), heap="768m")
    out: dict = {}
    import logging

    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the broker's readiness probe is noisy
    try:
        broker.start()
        tag = uuid.uuid4().hex[:6]
        s = settings_from(None, broker.port, **{"kafka.controller_port": broker.controller_port,
                                                "topics.names": [f"bench-a-{tag}", f"bench-b-{tag}", ],
                                                "paths.ground_truth": str(scratch / "ground_truth"),
                                                "paths.runs": str(scratch / "runs")})
        create_topics(s)
        import resource

        def children_cpu() -> float:
            r = resource.getrusage(resource.RUSAGE_CHILDREN)  # the producer processes, once joined
            return r.ru_utime + r.ru_stime

        t, c = time.perf_counter(), children_cpu()
        run = run_produce(s, events, seed)
        wall, cpu = time.perf_counter() - t, children_cpu() - c
        m = run.manifest
        out["producers"] = {"events": events, "records": m["records"], "acked": m["sent"], "failed": m["failed"],
                            "records_per_s": m["records"] / wall, "records_per_s_sending": m["rate"],
                            "records_per_cpu_s": m["records"] / cpu if cpu > 0 else None,
                            "seconds": wall, "cpu_seconds": cpu,
                            "compression": settings["producer"]["compression_type"]}
        click.echo(f"producers  {events:>9,} events  {m['records'] / wall:>10,.0f} records/s for the two "
                   f"({m['sent']:,} acked, {m['failed']} failed, {wall:.1f}s incl. process start; "
                   f"{m['records'] / cpu:,.0f} records per CPU second of the producer processes)")
        jvm = settings.path("jvm") / "tools"
        if not any(jvm.glob("kafka-tools-*.jar")):
            out["producer_performance"] = {"error": f"no kafka-tools jar in {jvm}: run make setup"}
        else:
            payload = scratch / "payload.txt"
            random.Random(seed).shuffle(sample)
            payload.write_bytes(b"\n".join(sample[:10000]))
            s2 = settings_from(None, broker.port, **{"topics.names": [f"bench-pp-{tag}"],
                                                     "kafka.controller_port": broker.controller_port})
            create_topics(s2)
            pp = producer_performance(settings, jvm, broker.bootstrap, f"bench-pp-{tag}", m["records"], payload)
            pp["records"] = m["records"]
            pp["avg_record_bytes"] = sum(map(len, sample[:10000])) / max(1, len(sample[:10000]))
            out["producer_performance"] = pp
            if "records_per_s" in pp:
                click.echo(f"ProducerPerformance {m['records']:>9,} records {pp['records_per_s']:>10,.0f} "
                           f"records/s (one Java producer, same records and settings)")
            else:
                click.echo(f"ProducerPerformance: {pp['error']}")
    finally:
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
