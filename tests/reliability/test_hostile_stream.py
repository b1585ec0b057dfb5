"""A hostile stream through the real broker and Spark: every malformed kind, binary garbage, a 5 MB
record, deeply nested JSON, unicode and emoji, SQL and HTML injection in page_url and browser, a
null key and null values. Ingest must not crash; each record lands in silver or in quarantine with
its reason, its text kept byte for byte. (That injected strings show as text in the reports and
the dashboard is tests/integration/test_report.py's.)"""

from __future__ import annotations

import random
import uuid

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tests.conftest import make_settings
from tests.unit.test_ingest import poison, sample_events
from website_activity.adapters.lake import read_table
from website_activity.stages.ingest import run_ingest
from website_activity.stages.produce import encode

pytestmark = pytest.mark.reliability
BIG = 5 * 1024 * 1024


def nested(depth: int) -> bytes:
    """JSON objects nested ``depth`` deep (written by hand: the json module stops at about 1000)."""
    return b'{"a":' * depth + b"{}" + b"}" * depth


def hostile(settings) -> list[tuple[bytes | None, bytes | None, str, str | None]]:
    """(key, value, where it must land: "silver" or a reason code, the text silver/quarantine keeps)."""
    events = sample_events(settings, 80)
    good, fresh = events[0], lambda e, **kw: dict(e, event_id=str(uuid.uuid4()), **kw)  # noqa: E731
    rows: list[tuple[bytes | None, bytes | None, str, str | None]] = []
    rows += [(e["session_id"].encode(), encode(e), "silver", None) for e in events[:20]]
    rows += [(b"poison", v, reason, None) for v, reason in poison(settings)]  # every malformed kind
    rows.append((b"binary", random.Random(9).randbytes(4096), "not_json", None))
    rows.append((b"big", encode(fresh(good, page_url=good["page_url"] + "?q=" + "x" * BIG)), "too_large", None))
    rows.append((b"deep-value", b"[" * 5000 + b"]" * 5000, "not_json", None))
    # a valid event plus an unknown field 5000 objects deep: Spark's JSON parser refuses nesting
    # deeper than 1000, so the record is not JSON to it (rather than a valid event with an extra)
    rows.append((b"deep-field", encode(fresh(good))[:-1] + b',"extra":' + nested(5000) + b"}", "not_json", None))
    texts = {
        "unicode": good["page_url"] + "/caf\u00e9-\u65e5\u672c-\u0639\u0631\u0628\u064a-e\u0301-\U0001F984\U0001F469\u200D\U0001F4BB",
        "sql": good["page_url"] + "?q=1'; DROP TABLE silver; --",
        "html": good["page_url"] + "/<script>alert('x')</script>\"><img src=x onerror=alert(1)>",
    }
    for name, url in texts.items():
        e = fresh(good, page_url=url)
        rows.append((name.encode(), encode(e), "silver", url))
    for browser in ("Chrome' OR '1'='1", "<script>alert(1)</script>", "Chrome \U0001F984"):
        value = encode(fresh(good, browser=browser))
        rows.append((b"browser", value, "bad_enum:browser", value.decode()))
    rows.append((None, encode(fresh(good)), "silver", None))  # a null key is fine
    rows.append((b"tombstone", None, "null_value", None))  # a null value (kafka-python needs a key then)
    return rows


def test_a_hostile_stream_lands_record_by_record_and_ingest_never_crashes(spark, broker, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    s = make_settings(tmp_path, kafka__port=broker.port, kafka__controller_port=broker.controller_port,
                      topics__names=[f"h-{tag}", f"i-{tag}"], spark__max_offsets_per_trigger=40)
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
    # one partition, so offsets name the records; a topic that takes the 5 MB record
    admin.create_topics([NewTopic(t, 1, 1, topic_configs={"max.message.bytes": str(2 * BIG)}) for t in s.topics])
    admin.close()
    rows = hostile(s)
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all", max_request_size=2 * BIG)
    futures = [producer.send(s.topics[0], key=k, value=v) for k, v, _, _ in rows]
    producer.flush()
    offsets = [f.get(timeout=60).offset for f in futures]
    producer.close()

    result = run_ingest(spark, s)  # several micro-batches (40 records each); it must simply finish
    summary = result.summary
    assert summary["reconciled"] and summary["records_read"] == len(rows)

    silver = {r.offset: r for r in read_table(spark, s, "silver").collect()}
    quarantine = {r.offset: r for r in read_table(spark, s, "quarantine").collect()}
    landed = {o: "silver" if o in silver else quarantine[o].reason for o in offsets}
    expected = {o: where for o, (_, _, where, _) in zip(offsets, rows)}
    assert landed == expected
    assert not set(silver) & set(quarantine)
    # injected and unicode text is kept as text, byte for byte, never interpreted
    for o, (_, _, where, text) in zip(offsets, rows):
        if text is not None and where == "silver":
            assert silver[o].page_url == text
        elif text is not None:
            assert quarantine[o].value == text
    assert summary["quarantine_by_reason"] == {
        r: sum(1 for w in expected.values() if w == r) for r in sorted(set(expected.values()) - {"silver"})}
