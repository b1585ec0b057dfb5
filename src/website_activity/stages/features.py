"""Session features: one row per session from silver events, and its label (did it convert?).

No leakage: only the events strictly before the session's first ``purchase`` count (the purchase,
and anything the stream delivers after it, would give the label away), and the only look at other
sessions is backwards in time (``prior_sessions``: sessions of the same user that started earlier).

The feature table (``paths.features``, Parquet) is what ``make train`` fits on and logs to MLflow as
its input dataset; ``make score`` builds the same features for the sessions it scores.

========================= =========================================================================
column                    meaning (all computed from the events before the first purchase)
========================= =========================================================================
session_id, user_id       identifiers (not model inputs)
device_type, browser      of the session's first event
n_events                  events
n_views                   ``view`` events (one per page visited)
n_clicks, n_scrolls       ``click`` / ``scroll`` events
n_cart_adds               ``add_to_cart`` events
n_pages                   distinct ``page_url`` values
n_product_views           ``view`` events on product pages (``/product/``)
n_distinct_products       distinct product pages viewed
n_category_views          ``view`` events on category pages (``/category/``)
n_search_views            ``view`` events on ``/search``
n_cart_views              ``view`` events on ``/cart``
n_checkout_views          ``view`` events on ``/checkout``
reached_product           the funnel's steps, 1.0 or 0.0: viewed a product page,
reached_cart              ... the cart,
reached_checkout          ... the checkout
used_search               1.0 when the session viewed ``/search``
duration_s                seconds from the first to the last counted event (0.0 for one event)
local_hour                hour (0-23) of the first event in the event's own ``timezone`` (IANA)
local_weekday             weekday of the first event in that timezone, 0 = Monday ... 6 = Sunday
day_part                  ``local_hour`` as a band: ``night`` (23-5 h), ``morning`` (6-11 h),
                          ``afternoon`` (12-17 h), ``evening`` (18-22 h)
weekend                   1.0 when ``local_weekday`` is Saturday or Sunday
prior_sessions            sessions of the same user that started strictly earlier (in the input)
returning                 1.0 when ``prior_sessions > 0``, else 0.0
log_prior_sessions        ln(1 + prior_sessions): a few very active users have hundreds
label                     1.0 when the session has a ``purchase`` event, else 0.0
========================= =========================================================================

The model reads :data:`MODEL_INPUTS`: the funnel (steps reached, cart adds, product views,
searches, pages), the visitor (device, returning, prior sessions) and the local time as bands a
linear model can weigh (day part, weekend). A local hour on a circle (sin/cos) cannot say
"evenings convert better" to a logistic regression; a band can. The other columns describe the
session for the reports and for later models.

A session whose only event is its purchase has nothing to predict from and is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError, first_line

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CATEGORICAL = ("device_type", "day_part")
"""String features, indexed then one-hot encoded."""
ONE_HOT_INTEGER: tuple[str, ...] = ()
"""Integer category features, one-hot encoded as they are."""
NUMERIC = ("n_views", "n_product_views", "n_cart_adds", "n_search_views", "reached_cart", "reached_checkout",
           "used_search", "returning", "log_prior_sessions", "weekend")
"""Numeric features, standardised."""
MODEL_INPUTS = (*CATEGORICAL, *ONE_HOT_INTEGER, *NUMERIC)
"""The columns the fitted pipeline reads (its MLflow signature)."""
FEATURE_COLUMNS = ("session_id", "user_id", "device_type", "browser", "n_events", "n_views", "n_clicks",
                   "n_scrolls", "n_cart_adds", "n_pages", "n_product_views", "n_distinct_products",
                   "n_category_views", "n_search_views", "n_cart_views", "n_checkout_views",
                   "reached_product", "reached_cart", "reached_checkout", "used_search", "duration_s",
                   "local_hour", "local_weekday", "day_part", "weekend", "prior_sessions", "returning",
                   "log_prior_sessions", "label")
"""The feature table's columns, in order."""


def session_features(silver: "DataFrame") -> "DataFrame":
    """One row of features per session, and its label (see the module docstring for each column).

    Args:
        silver: Events with at least ``session_id``, ``user_id``, ``page_url``, ``timestamp``
            (a UTC timestamp), ``timezone``, ``action_type``, ``device_type`` and ``browser``.

    Returns:
        A DataFrame with :data:`FEATURE_COLUMNS` (counts are longs, ``local_hour``/``local_weekday``
        ints, the rest doubles or strings).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    purchases = (silver.where(F.col("action_type") == "purchase")
                 .groupBy("session_id").agg(F.min("timestamp").alias("purchase_time")))
    before = (
        silver.join(purchases, "session_id", "left")
        .where((F.col("action_type") != "purchase")
               & (F.col("purchase_time").isNull() | (F.col("timestamp") < F.col("purchase_time"))))
    )
    is_view = F.col("action_type") == "view"
    page = F.col("page_url")

    def count_if(cond: Any) -> Any:
        return F.count(F.when(cond, True))

    sessions = before.groupBy("session_id").agg(
        F.min("user_id").alias("user_id"),
        F.min_by("device_type", "timestamp").alias("device_type"),
        F.min_by("browser", "timestamp").alias("browser"),
        F.min_by("timezone", "timestamp").alias("timezone"),
        F.count(F.lit(1)).alias("n_events"),
        count_if(is_view).alias("n_views"),
        count_if(F.col("action_type") == "click").alias("n_clicks"),
        count_if(F.col("action_type") == "scroll").alias("n_scrolls"),
        count_if(F.col("action_type") == "add_to_cart").alias("n_cart_adds"),
        # collect_set, not countDistinct: sessions are short, and it spares an Expand and a shuffle
        F.size(F.collect_set("page_url")).cast("long").alias("n_pages"),
        count_if(is_view & page.contains("/product/")).alias("n_product_views"),
        F.size(F.collect_set(F.when(is_view & page.contains("/product/"), page))).cast("long")
        .alias("n_distinct_products"),
        count_if(is_view & page.contains("/category/")).alias("n_category_views"),
        count_if(is_view & page.endswith("/search")).alias("n_search_views"),
        count_if(is_view & page.endswith("/cart")).alias("n_cart_views"),
        count_if(is_view & page.endswith("/checkout")).alias("n_checkout_views"),
        F.min("timestamp").alias("start_time"),
        F.max("timestamp").alias("end_time"),
        F.max("purchase_time").isNotNull().alias("purchased"),
    )
    local_start = F.from_utc_timestamp("start_time", F.col("timezone"))
    # rank, not row_number: two sessions starting at the same instant are not earlier than each other
    prior = F.rank().over(Window.partitionBy("user_id").orderBy("start_time")) - 1
    hour = F.col("local_hour")
    day_part = (F.when(hour < 6, "night").when(hour < 12, "morning").when(hour < 18, "afternoon")
                .when(hour < 23, "evening").otherwise("night"))

    def flag(cond: Any) -> Any:
        return cond.cast("double")

    return (
        sessions
        .withColumn("local_hour", F.hour(local_start))
        .withColumn("local_weekday", F.weekday(local_start))
        .withColumn("prior_sessions", prior.cast("long"))
        .select(
            "session_id", "user_id", "device_type", "browser", "n_events", "n_views", "n_clicks",
            "n_scrolls", "n_cart_adds", "n_pages", "n_product_views", "n_distinct_products",
            "n_category_views", "n_search_views", "n_cart_views", "n_checkout_views",
            flag(F.col("n_product_views") > 0).alias("reached_product"),
            flag(F.col("n_cart_views") > 0).alias("reached_cart"),
            flag(F.col("n_checkout_views") > 0).alias("reached_checkout"),
            flag(F.col("n_search_views") > 0).alias("used_search"),
            ((F.unix_micros("end_time") - F.unix_micros("start_time")) / 1e6).alias("duration_s"),
            "local_hour", "local_weekday", day_part.alias("day_part"),
            flag(F.col("local_weekday") >= 5).alias("weekend"),
            "prior_sessions",
            flag(F.col("prior_sessions") > 0).alias("returning"),
            F.log1p("prior_sessions").alias("log_prior_sessions"),
            F.col("purchased").cast("double").alias("label"),
        )
    )


def write_features(features: "DataFrame", settings: Settings) -> str:
    """Write the feature table to ``paths.features`` (replacing it): one file sorted by ``session_id``.

    One sorted file, so that reading it back gives the same rows in the same order on every run:
    the fit, and so the metrics, are then reproducible bit for bit. (A session is a few hundred
    bytes of features: a million events make a table of a few MB.)

    Returns:
        The table's path.
    """
    path = str(settings.path("features"))
    try:
        (features.repartition(1).sortWithinPartitions("session_id")
         .write.mode("overwrite").parquet(path))
    except Exception as exc:  # one line, not a JVM trace
        raise PipelineError(f"cannot write the feature table {path}: {first_line(exc)}") from exc
    return path


def read_features(spark: "SparkSession", settings: Settings) -> "DataFrame":
    """The feature table written by :func:`write_features`."""
    path = settings.path("features")
    try:
        return spark.read.parquet(str(path))
    except Exception as exc:
        raise PipelineError(f"cannot read the feature table {path}: {first_line(exc)} "
                            "(make train writes it)") from exc
