"""The pipeline on a real cluster: 3 Kafka brokers (KRaft, replication 3, min ISR 2) and a Spark
standalone master with 2 workers, all real processes of the local harness."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.cluster.conftest import read_json, run_stage, stage_env, start_stage, topic_names
from tests.conftest import make_settings
from website_activity.adapters.lake import read_silver
from website_activity.devtools.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.cluster

EVENTS = 6000
SEED = 11
FIELDS = ["event_id", "user_id", "page_url", "timestamp", "action_type", "browser", "timezone",
          "device_type", "click_coordinates_x", "click_coordinates_y", "session_id", "ip_address"]


def end_offsets(bootstrap: str, topics: list[str]) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        return sum(consumer.end_offsets(parts).values()) if parts else 0
    finally:
        consumer.close()


def silver_rows(spark, out: Path) -> list[tuple]:
    settings = make_settings(out)
    return sorted(tuple(r) for r in read_silver(spark, settings).select(*FIELDS).collect())


def test_cluster_profile_gives_the_same_lake_and_metrics_as_local_mode(harness, spark, settings, tmp_path) -> None:
    """The same topics (names seed the generator), the same seed: once on the cluster profile
    (3 brokers, Spark standalone), once on the local profile (one embedded broker, local[2]).

    The two chains run at the same time, each in a thread of its own: most of a stage's time is a
    JVM starting or the standalone master placing executors, so two chains at once take little
    longer than the slower one."""
    kafka, standalone = harness
    topics = topic_names()
    single = EmbeddedBroker(home=tmp_path / "broker", jvm_dir=settings.path("jvm") / "broker",
                            port=free_port(), controller_port=free_port(), heap="320m")

    def chain(mode: str) -> Path:
        out = tmp_path / mode
        if mode == "cluster":
            env = stage_env(out, kafka__bootstrap_servers=kafka.bootstrap, topics__names=topics,
                            spark__master=standalone.master_url)
        else:
            single.start()  # in the thread: the cluster chain's first stages overlap the broker's start
            env = stage_env(out, kafka__port=single.port, kafka__controller_port=single.controller_port,
                            topics__names=topics)
        run_stage("topics", env, profile=mode)
        run_stage("produce", env, "--events", str(EVENTS), "--seed", str(SEED), profile=mode)
        ingest = run_stage("ingest", env, profile=mode)
        run_stage("validate", env, profile=mode)
        run_stage("train", env, profile=mode)
        assert "to silver" in ingest.stdout
        return out

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {mode: pool.submit(chain, mode) for mode in ("cluster", "local")}
            runs = {mode: f.result() for mode, f in futures.items()}  # a failed stage fails the test here
    finally:
        single.stop()
    # the cluster's stages ran on its executors: each Spark stage (ingest, validate, train) was
    # an application of the standalone master, with executors on both workers
    for worker in ("worker-1", "worker-2"):
        apps = [p for p in (standalone.home / "work" / worker).iterdir() if p.name.startswith("app-")]
        assert len(apps) >= 3, (worker, apps)

    cluster_rows, local_rows = silver_rows(spark, runs["cluster"]), silver_rows(spark, runs["local"])
    assert len(cluster_rows) == EVENTS
    assert cluster_rows == local_rows

    cluster_metrics = numbers(read_json(runs["cluster"] / "models" / "metrics.json"))
    local_metrics = numbers(read_json(runs["local"] / "models" / "metrics.json"))
    assert any("auc" in k for k in local_metrics), local_metrics
    assert cluster_metrics.keys() == local_metrics.keys()
    for key, value in local_metrics.items():
        assert cluster_metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def numbers(tree: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics file, except durations (which differ between runs)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and "second" not in key:
            out[name] = float(value)
    return out


def test_losing_one_of_three_brokers_during_produce_and_ingest_loses_nothing(harness, spark, tmp_path) -> None:
    kafka, _ = harness
    events = 20000  # 5-6 micro-batches of 4,000: the kill lands after the first, with batches left
    out = tmp_path / "loss"
    out.mkdir()
    topics = topic_names()
    env = stage_env(out, kafka__bootstrap_servers=kafka.bootstrap, topics__names=topics,
                    spark__master="local[2]", spark__max_offsets_per_trigger=4000)
    run_stage("topics", env)

    # 1. SIGKILL a broker while the producers send; they go on with the two left (min ISR 2)
    producing = start_stage("produce", env, "--events", str(events), "--seed", "3", log=out / "produce.log")
    victim = kafka.nodes[1]
    deadline = time.monotonic() + 300
    while end_offsets(kafka.bootstrap, topics) < events // 10:
        assert producing.poll() is None, (out / "produce.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the producers sent nothing"
        time.sleep(0.2)
    assert victim.kill()
    assert producing.wait(timeout=600) == 0, (out / "produce.log").read_text()[-3000:]
    manifest = read_json(out / "runs" / "produce.json")
    assert manifest["failed"] == 0 and manifest["events"] == events
    assert manifest["sent"] == manifest["records"] >= events  # the valid events plus injected faults
    victim.start()
    kafka.wait_brokers(3)
    assert end_offsets(kafka.bootstrap, topics) == manifest["sent"]  # every acknowledged record is kept

    # 2. SIGKILL another broker once the ingest has committed its first micro-batch
    ingesting = start_stage("ingest", env, log=out / "ingest.log")
    commits = out / "checkpoints" / "ingest" / "commits"
    deadline = time.monotonic() + 600
    while not (commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir())):
        assert ingesting.poll() is None, (out / "ingest.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no micro-batch committed"
        time.sleep(0.2)
    second = kafka.nodes[2]
    assert second.kill()
    assert ingesting.wait(timeout=900) == 0, (out / "ingest.log").read_text()[-3000:]
    second.start()
    kafka.wait_brokers(3)

    summary = read_json(out / "runs" / "ingest.json")
    assert summary["reconciled"] is True
    assert summary["records_read"] == manifest["sent"]
    assert summary["records_read"] == summary["silver"] + summary["quarantined"] + summary["duplicates_removed"]
    assert summary["quarantined"] == sum(n for kind, n in manifest["faults"].items()
                                         if kind not in ("duplicate", "late"))
    assert summary["duplicates_removed"] == manifest["faults"]["duplicate"]
    df = read_silver(spark, make_settings(out))
    assert df.count() == events == summary["silver"]
    assert df.select("event_id").distinct().count() == events
