"""Session features and the train/validation/test split, on tiny inline DataFrames."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from website_activity.stages.features import FEATURE_COLUMNS, MODEL_INPUTS, session_features
from website_activity.stages.train.train import (assign_splits, build_search, fold_column, split_sessions,
                                                 use_cross_validation)

SITE = "https://shop.example.com"
SCHEMA = ("event_id string, user_id string, page_url string, timestamp timestamp, action_type string, "
          "browser string, timezone string, device_type string, session_id string")
NY, TOKYO = "America/New_York", "Asia/Tokyo"


def ts(hhmmss: str) -> datetime:
    return datetime.fromisoformat(f"2026-01-05T{hhmmss}")  # a Monday; the session time zone is UTC


def ev(n: int, user: str, page: str, at: str, action: str, session: str, tz: str = NY,
       device: str = "desktop", browser: str = "Chrome") -> tuple:
    return (f"e{n}", user, SITE + page, ts(at), action, browser, tz, device, session)


@pytest.fixture(scope="module")
def events(spark):
    rows = [
        # s1: u1's first session (New York, UTC-5), ends in a purchase
        ev(1, "u1", "/", "08:00:00", "view", "s1"),
        ev(2, "u1", "/", "08:00:10", "scroll", "s1"),
        ev(3, "u1", "/product/books-1", "08:00:30", "view", "s1"),
        ev(4, "u1", "/product/books-1", "08:00:40", "click", "s1"),
        ev(5, "u1", "/product/books-1", "08:01:00", "add_to_cart", "s1"),
        ev(6, "u1", "/checkout", "08:01:30", "purchase", "s1"),
        # s2: u1 comes back, visits search, a product, a category and the cart; no purchase
        ev(7, "u1", "/search", "09:00:00", "view", "s2"),
        ev(8, "u1", "/product/toys-3", "09:00:15", "view", "s2"),
        ev(9, "u1", "/category/toys", "09:00:20", "view", "s2"),
        ev(10, "u1", "/cart", "09:00:30", "view", "s2"),
        ev(17, "u1", "/checkout", "09:00:40", "view", "s2"),
        # s3: u2's first session (Tokyo, UTC+9: already Tuesday 05:30 there), a single view
        ev(11, "u2", "/", "20:30:00", "view", "s3", TOKYO, "mobile", "Safari"),
        # s4: u2 again: the same product twice, a purchase, then events after it (leakage case)
        ev(12, "u2", "/product/home-7", "21:00:00", "view", "s4", TOKYO, "mobile", "Safari"),
        ev(13, "u2", "/product/home-7", "21:00:05", "view", "s4", TOKYO, "mobile", "Safari"),
        ev(14, "u2", "/checkout", "21:00:20", "purchase", "s4", TOKYO, "mobile", "Safari"),
        ev(15, "u2", "/checkout", "21:00:25", "click", "s4", TOKYO, "mobile", "Safari"),
        ev(16, "u2", "/product/home-8", "21:00:30", "add_to_cart", "s4", TOKYO, "mobile", "Safari"),
        # s5: u3 on a Saturday evening in New York
        ("e18", "u3", SITE + "/", datetime.fromisoformat("2026-01-10T23:30:00"), "view", "Safari", NY, "tablet",
         "s5"),
    ]
    # Shuffle the rows across partitions: the features must not depend on row order.
    return spark.createDataFrame(rows, SCHEMA).repartition(3)


def test_session_features_exact_rows(events):
    got = session_features(events)

    assert tuple(got.columns) == FEATURE_COLUMNS
    types = dict((f.name, f.dataType.simpleString()) for f in got.schema.fields)
    assert {c for c, t in types.items() if t == "bigint"} == {
        "n_events", "n_views", "n_clicks", "n_scrolls", "n_cart_adds", "n_pages", "n_product_views",
        "n_distinct_products", "n_category_views", "n_search_views", "n_cart_views", "n_checkout_views",
        "prior_sessions"}
    assert (types["local_hour"], types["local_weekday"], types["day_part"]) == ("int", "int", "string")
    assert set(MODEL_INPUTS) <= set(FEATURE_COLUMNS)
    # columns: session user device browser | events views clicks scrolls carts pages products
    #          distinct_products categories searches cart_views checkout_views | reached product cart
    #          checkout, used_search | duration local_hour weekday day_part weekend | prior returning
    #          log_prior | label
    expected = [
        # the purchase (08:01:30) and /checkout count nowhere: 5 events over 60 s; 03:00 in New York
        ("s1", "u1", "desktop", "Chrome", 5, 2, 1, 1, 1, 2, 1, 1, 0, 0, 0, 0, 1.0, 0.0, 0.0, 0.0, 60.0,
         3, 0, "night", 0.0, 0, 0.0, 0.0, 1.0),
        ("s2", "u1", "desktop", "Chrome", 5, 5, 0, 0, 0, 5, 1, 1, 1, 1, 1, 1, 1.0, 1.0, 1.0, 1.0, 40.0,
         4, 0, "night", 0.0, 1, 1.0, math.log(2), 0.0),
        # Tokyo: 20:30 UTC on Monday is 05:30 on Tuesday (weekday 1)
        ("s3", "u2", "mobile", "Safari", 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0,
         5, 1, "night", 0.0, 0, 0.0, 0.0, 0.0),
        # leakage: the click and the cart add after the purchase are dropped with it
        ("s4", "u2", "mobile", "Safari", 2, 2, 0, 0, 0, 1, 2, 1, 0, 0, 0, 0, 1.0, 0.0, 0.0, 0.0, 5.0,
         6, 1, "morning", 0.0, 1, 1.0, math.log(2), 1.0),
        # Saturday evening in New York (23:30 UTC is 18:30 there)
        ("s5", "u3", "tablet", "Safari", 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0,
         18, 5, "evening", 1.0, 0, 0.0, 0.0, 0.0),
    ]
    rows = [tuple(r) for r in got.orderBy("session_id").collect()]
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert row == pytest.approx(want, abs=1e-12), want[0]


@pytest.mark.parametrize("hour, part", [(0, "night"), (5, "night"), (6, "morning"), (11, "morning"),
                                        (12, "afternoon"), (17, "afternoon"), (18, "evening"),
                                        (22, "evening"), (23, "night")])
def test_day_part_bands(spark, hour, part):
    # UTC visitors: the local hour is the UTC hour; the evening band is 18:00-22:59
    rows = [ev(1, "u1", "/", f"{hour:02d}:10:00", "view", "x", tz="UTC")]
    got = session_features(spark.createDataFrame(rows, SCHEMA)).first()
    assert (got["local_hour"], got["day_part"]) == (hour, part)


def test_session_without_events_before_its_purchase_is_left_out(spark):
    rows = [ev(1, "u9", "/checkout", "08:00:00", "purchase", "lone")]
    assert session_features(spark.createDataFrame(rows, SCHEMA)).count() == 0


def test_sessions_starting_at_the_same_instant_are_not_earlier_than_each_other(spark):
    rows = [ev(1, "u1", "/", "08:00:00", "view", "a"), ev(2, "u1", "/", "08:00:00", "view", "b"),
            ev(3, "u1", "/", "08:05:00", "view", "c")]
    got = session_features(spark.createDataFrame(rows, SCHEMA)).orderBy("session_id")
    assert [(r["session_id"], r["prior_sessions"], r["returning"]) for r in got.collect()] == [
        ("a", 0, 0.0), ("b", 0, 0.0), ("c", 2, 1.0)]


def session_ids(spark, n: int):
    from pyspark.sql import functions as F

    return spark.range(n).select(F.concat(F.lit("session-"), F.col("id").cast("string")).alias("session_id"))


@pytest.fixture(scope="module")
def many_sessions(spark):
    return session_ids(spark, 3000)


def ids(df) -> set[str]:
    return {r["session_id"] for r in df.select("session_id").collect()}


def test_split_is_disjoint_complete_and_near_the_fractions(many_sessions):
    train, val, test = (ids(d) for d in split_sessions(many_sessions, 0.25, 0.2, seed=42))

    assert not (train & val or train & test or val & test)
    assert train | val | test == ids(many_sessions)
    assert 0.21 < len(test) / 3000 < 0.29
    assert 0.16 < len(val) / 3000 < 0.24


def test_split_is_deterministic_whatever_the_partitioning(spark, many_sessions):
    def sides(df):
        return {r["session_id"]: r["split"] for r in assign_splits(df, 0.25, 0.2, 42).collect()}

    a = sides(many_sessions.repartition(7))
    b = sides(many_sessions.coalesce(1).orderBy("session_id", ascending=False))
    # a session's side depends on its id alone, not on the other rows
    few = sides(session_ids(spark, 500))

    assert a == b
    assert few == {k: v for k, v in a.items() if k in few}


def test_split_changes_with_the_seed(many_sessions):
    _, _, test_42 = split_sessions(many_sessions, 0.25, 0.2, seed=42)
    _, _, test_7 = split_sessions(many_sessions, 0.25, 0.2, seed=7)

    assert ids(test_42) != ids(test_7)


def test_folds_are_stable_and_balanced(spark, many_sessions):
    def folds(df):
        return {r["session_id"]: r["fold"] for r in fold_column(df, 3, 42).collect()}

    a = folds(many_sessions.repartition(5))
    assert a == folds(many_sessions.coalesce(1))  # by id alone, like the split
    sizes = [list(a.values()).count(k) for k in range(3)]
    assert set(a.values()) == {0, 1, 2} and min(sizes) > 0.28 * 3000
    # independent of the split: each fold holds sessions of every split
    sides = {r["session_id"]: r["split"] for r in assign_splits(many_sessions, 0.25, 0.2, 42).collect()}
    assert all({sides[s] for s, f in a.items() if f == k} == {"train", "validation", "test"} for k in range(3))


def test_small_training_splits_are_cross_validated():
    from pyspark.ml.tuning import CrossValidator, TrainValidationSplit

    conf = {"cv_max_sessions": 20000, "folds": 3, "train_ratio": 0.75, "reg_params": [0.0, 0.01],
            "elastic_net_params": [0.0], "max_iter": 100, "tol": 1e-5, "parallelism": 2}
    assert use_cross_validation(20000, conf) and not use_cross_validation(20001, conf)
    cv = build_search(conf, 42, True)
    assert isinstance(cv, CrossValidator) and cv.getNumFolds() == 3 and cv.getFoldCol() == "fold"
    # the grid holds no regularisation at all, and a light one
    assert sorted(m[cv.getEstimator().regParam] for m in cv.getEstimatorParamMaps()) == [0.0, 0.01]
    tvs = build_search(conf, 42, False)
    assert isinstance(tvs, TrainValidationSplit) and tvs.getTrainRatio() == 0.75
