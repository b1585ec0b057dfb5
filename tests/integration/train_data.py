"""Generated lakes for the training tests: silver as ingest writes it, and a ground-truth table.

Until the generator writes its own ground truth (``paths.ground_truth``, one Parquet file per
topic), :func:`ground_truth` rebuilds it from the generated events with the generator's own
conversion model (``purchase_probability``), in the contract's shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from website_activity.config import Settings
from website_activity.generator import EventGenerator, purchase_probability
from website_activity.ingest import parse_records, split_valid
from website_activity.lake import write_batch


def generate(settings: Settings, seed: int, events: int, topic: str = "producer-a") -> list[dict[str, Any]]:
    return list(EventGenerator.from_settings(settings, seed, topic).events(events))


def write_silver(spark, settings: Settings, events: list[dict[str, Any]], topic: str = "producer-a",
                 batch_id: int = 0) -> int:
    """Parse the events as ingest does and write them into ``paths.silver`` (one batch)."""
    raw = spark.createDataFrame([(json.dumps(e), topic, i % 2, i) for i, e in enumerate(events)],
                                "value string, topic string, partition int, offset long")
    silver, _ = split_valid(parse_records(raw, settings), settings)
    return write_batch(silver, settings.path("silver"), batch_id, partition_by="event_date")


def ground_truth_rows(events: Iterable[dict[str, Any]], topic: str = "producer-a") -> list[dict[str, Any]]:
    """One row per session of one stream: the true purchase probability and the outcome.

    The stream's last session may have been cut short by the event count: ``complete`` is false.
    """
    sessions: dict[str, dict[str, Any]] = {}
    for e in events:
        s = sessions.setdefault(e["session_id"], {"user_id": e["user_id"], "device": e["device_type"],
                                                  "cart_adds": 0, "product_views": 0, "converted": False})
        if e["action_type"] == "add_to_cart":
            s["cart_adds"] += 1
        elif e["action_type"] == "view" and "/product/" in e["page_url"]:
            s["product_views"] += 1
        elif e["action_type"] == "purchase":
            s["converted"] = True
    seen: set[str] = set()
    rows = []
    for i, (sid, s) in enumerate(sessions.items()):  # insertion order = the stream's order
        returning = s["user_id"] in seen
        seen.add(s["user_id"])
        rows.append({"session_id": sid, "user_id": s["user_id"], "topic": topic,
                     "p_convert": purchase_probability(s["cart_adds"], s["product_views"], s["device"], returning),
                     "converted": s["converted"], "complete": i < len(sessions) - 1})
    return rows


def write_ground_truth(settings: Settings, events: list[dict[str, Any]], topic: str = "producer-a") -> Path:
    out = settings.path("ground_truth")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{topic}.parquet"
    pq.write_table(pa.Table.from_pylist(ground_truth_rows(events, topic)), path)
    return path
