"""Session features and the train/test split, on tiny inline DataFrames."""

from __future__ import annotations

from datetime import datetime

import pytest

from website_activity.train import FEATURE_COLUMNS, session_features, split_sessions

SITE = "https://shop.example.com"
EVENT_COLUMNS = ("event_id", "user_id", "page_url", "timestamp", "action_type", "browser",
                 "device_type", "session_id")


def ts(hhmmss: str) -> datetime:
    return datetime.fromisoformat(f"2026-01-05T{hhmmss}")


def ev(n: int, user: str, page: str, at: str, action: str, session: str,
       device: str = "desktop", browser: str = "Chrome") -> tuple:
    return (f"e{n}", user, SITE + page, ts(at), action, browser, device, session)


@pytest.fixture(scope="module")
def events(spark):
    rows = [
        # s1: u1's first session, ends in a purchase
        ev(1, "u1", "/", "08:00:00", "view", "s1"),
        ev(2, "u1", "/", "08:00:10", "scroll", "s1"),
        ev(3, "u1", "/product/books-1", "08:00:30", "view", "s1"),
        ev(4, "u1", "/product/books-1", "08:00:40", "click", "s1"),
        ev(5, "u1", "/product/books-1", "08:01:00", "add_to_cart", "s1"),
        ev(6, "u1", "/checkout", "08:01:30", "purchase", "s1"),
        # s2: u1 comes back, no purchase
        ev(7, "u1", "/search", "09:00:00", "view", "s2"),
        ev(8, "u1", "/product/toys-3", "09:00:15", "view", "s2"),
        # s3: u2's first session, a single view
        ev(9, "u2", "/", "08:30:00", "view", "s3", "mobile", "Safari"),
        # s4: u2 again; an event arriving after the purchase must not count either
        ev(10, "u2", "/product/home-7", "10:00:00", "view", "s4", "mobile", "Safari"),
        ev(11, "u2", "/checkout", "10:00:20", "purchase", "s4", "mobile", "Safari"),
        ev(12, "u2", "/checkout", "10:00:25", "click", "s4", "mobile", "Safari"),
    ]
    schema = ("event_id string, user_id string, page_url string, timestamp timestamp, "
              "action_type string, browser string, device_type string, session_id string")
    # Shuffle the rows across partitions: the features must not depend on row order.
    return spark.createDataFrame(rows, schema).repartition(3)


def test_session_features_exact_rows(events):
    got = session_features(events)

    assert [(f.name, f.dataType.simpleString()) for f in got.schema.fields] == [
        ("session_id", "string"), ("user_id", "string"), ("device_type", "string"),
        ("browser", "string"), ("n_events", "bigint"), ("n_views", "bigint"),
        ("n_clicks", "bigint"), ("n_scrolls", "bigint"), ("n_cart_adds", "bigint"),
        ("n_pages", "bigint"), ("n_product_views", "bigint"), ("duration_s", "double"),
        ("returning", "double"), ("label", "double"),
    ]
    assert tuple(got.columns) == FEATURE_COLUMNS
    # columns:   session user  device     browser  events views clicks scrolls carts pages
    #            product_views duration returning label
    expected = [
        # the purchase (08:01:30) and /checkout count nowhere: 5 events over 60 s, label 1
        ("s1", "u1", "desktop", "Chrome", 5, 2, 1, 1, 1, 2, 1, 60.0, 0.0, 1.0),
        ("s2", "u1", "desktop", "Chrome", 2, 2, 0, 0, 0, 2, 1, 15.0, 1.0, 0.0),
        ("s3", "u2", "mobile", "Safari", 1, 1, 0, 0, 0, 1, 0, 0.0, 0.0, 0.0),
        # the click after the purchase is dropped too: one event, label 1
        ("s4", "u2", "mobile", "Safari", 1, 1, 0, 0, 0, 1, 1, 0.0, 1.0, 1.0),
    ]
    assert [tuple(r) for r in got.orderBy("session_id").collect()] == expected


def test_session_without_events_before_its_purchase_is_left_out(spark):
    rows = [ev(1, "u9", "/checkout", "08:00:00", "purchase", "lone")]
    schema = ("event_id string, user_id string, page_url string, timestamp timestamp, "
              "action_type string, browser string, device_type string, session_id string")
    assert session_features(spark.createDataFrame(rows, schema)).count() == 0


def session_ids(spark, n: int):
    from pyspark.sql import functions as F

    return spark.range(n).select(F.concat(F.lit("session-"), F.col("id").cast("string"))
                                 .alias("session_id"))


@pytest.fixture(scope="module")
def many_sessions(spark):
    return session_ids(spark, 2000)


def ids(df) -> set[str]:
    return {r["session_id"] for r in df.select("session_id").collect()}


def test_split_is_disjoint_complete_and_near_the_fraction(many_sessions):
    train, test = split_sessions(many_sessions, 0.25, seed=42)
    train_ids, test_ids = ids(train), ids(test)

    assert not train_ids & test_ids
    assert train_ids | test_ids == ids(many_sessions)
    assert 0.20 < len(test_ids) / 2000 < 0.30


def test_split_is_deterministic_whatever_the_partitioning(spark, many_sessions):
    _, test_a = split_sessions(many_sessions.repartition(7), 0.25, seed=42)
    _, test_b = split_sessions(many_sessions.coalesce(1).orderBy("session_id", ascending=False),
                               0.25, seed=42)
    # a session's side depends on its id alone, not on the other rows
    few = session_ids(spark, 500)
    _, test_c = split_sessions(few, 0.25, seed=42)

    assert ids(test_a) == ids(test_b)
    assert ids(test_c) == ids(test_a) & ids(few)


def test_split_changes_with_the_seed(many_sessions):
    _, test_42 = split_sessions(many_sessions, 0.25, seed=42)
    _, test_7 = split_sessions(many_sessions, 0.25, seed=7)

    assert ids(test_42) != ids(test_7)
