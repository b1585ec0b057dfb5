"""Generated lakes for the training tests: silver as ingest writes it, and the generator's own
ground-truth table (``paths.ground_truth``, one Parquet file per topic), without Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from website_activity.adapters.lake import write_batch
from website_activity.core.config import Settings
from website_activity.simulate.generator import EventGenerator
from website_activity.stages.ingest import parse_records, rules_of, split_valid


class Generated(list):
    """The valid events of one stream, and the generator that drew them (its ground truth)."""

    generator: EventGenerator


def generate(settings: Settings, seed: int, events: int, topic: str = "producer-a") -> Generated:
    gen = EventGenerator.from_settings(settings, seed, topic)
    out = Generated(gen.events(events))
    out.generator = gen
    return out


def write_silver(spark, settings: Settings, events: list[dict[str, Any]], topic: str = "producer-a",
                 batch_id: int = 0) -> int:
    """Parse the events as ingest does and write them into ``paths.silver`` (one batch)."""
    raw = spark.createDataFrame([(json.dumps(e), topic, i % 2, i) for i, e in enumerate(events)],
                                "value string, topic string, partition int, offset long")
    silver, _ = split_valid(parse_records(raw, rules_of(settings)), rules_of(settings))
    return write_batch(silver, settings.path("silver"), batch_id, partition_by="event_date")


def write_ground_truth(settings: Settings, events: Generated, topic: str = "producer-a") -> Path:
    """The generator's ground truth of ``events``, where the producers would write it."""
    out = settings.path("ground_truth")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{topic}.parquet"
    pq.write_table(events.generator.ground_truth(topic), path)
    return path
