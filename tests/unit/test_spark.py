"""The session's tuning for small local runs reaches the driver JVM and Spark (docs/performance.md)."""

from website_activity.adapters.spark import DELTA_CONF


def test_the_driver_runs_with_the_configured_jit_and_a_cache_for_compiled_queries(spark, settings) -> None:
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert settings["spark"]["driver_java_options"]  # the default config sets them
    for option in settings["spark"]["driver_java_options"].split():
        assert option in args, args
    assert spark.sparkContext.getConf().get("spark.sql.codegen.cache.maxEntries") == "1000"
    # Delta rebuilds a table's state in this many partitions (its default, 50, cost ~1 s per commit)
    assert spark.conf.get("spark.databricks.delta.snapshotPartitions") == DELTA_CONF[
        "spark.databricks.delta.snapshotPartitions"] == "1"
    # gold's replaceWhere writes exactly the replaced range: no extra job to check it
    assert spark.conf.get("spark.databricks.delta.replaceWhere.constraintCheck.enabled") == "false"
    # whole-stage methods stay within what HotSpot compiles (larger: evaluated operator by operator)
    assert spark.conf.get("spark.sql.codegen.hugeMethodLimit") == "8000"
    # auto compaction leaves a large batch's files alone (16 MB and up), compacts small ones
    assert int(spark.conf.get("spark.databricks.delta.autoCompact.minFileSize")) == 16 * 1024 * 1024


def test_warm_state_computes_the_state_the_next_idempotent_write_needs(spark, tmp_path) -> None:
    from website_activity.adapters.lake import settle, warm_state, write_batch

    table = tmp_path / "t"
    write_batch(spark.range(10), table, 0, app_id="warm-test")
    write_batch(spark.range(10), table, 1, app_id="warm-test")
    delta_log = getattr(getattr(spark.sparkContext._jvm.org.apache.spark.sql.delta, "DeltaLog$"), "MODULE$")

    def computed() -> bool:
        return bool(delta_log.forTable(spark._jsparkSession, str(table)).unsafeVolatileSnapshot()
                    ._computedStateTriggered())

    assert not computed()  # the snapshot a commit leaves has not rebuilt its state yet
    warm_state(spark, table)
    settle()
    assert computed()
    # the next write of the batch after finds it and commits as usual
    assert write_batch(spark.range(5), table, 2, app_id="warm-test") == 5


def test_a_new_session_does_not_compact_a_partition_after_every_batch(spark, tmp_path) -> None:
    """Delta's default compacts a partition the session has not compacted yet after any commit,
    and forgets it did when the compaction takes files from before the session: every batch of
    a run on an existing lake rewrote its partitions' small files. Here the session's counts
    are reset (as a new run starts with none) and the next batches must leave the files alone."""
    from pyspark.sql import functions as F

    from website_activity.adapters.lake import table_stats, write_batch

    table = tmp_path / "t"
    rows = lambda n: spark.range(n).withColumn("d", F.lit("2026-01-05"))  # noqa: E731 - one partition
    for batch in range(3):
        write_batch(rows(10), table, batch, partition_by="d", app_id="compact-test")
    assert table_stats(table)["files"] == 3  # fewer than minNumFiles small files: none compacted
    stats = spark.sparkContext._jvm.org.apache.spark.sql.delta.stats.AutoCompactPartitionStats
    stats.instance(spark._jsparkSession).resetTestOnly()  # what a new session knows: nothing
    for batch in range(3, 5):
        write_batch(rows(10), table, batch, partition_by="d", app_id="compact-test")
    after = table_stats(table)
    assert after["files"] == 5 and after["rows"] == 50, after
    # and a partition with minNumFiles small files from this session is compacted, old ones too
    key = "spark.databricks.delta.autoCompact.minNumFiles"
    spark.conf.set(key, "4")
    try:
        for batch in range(5, 7):
            write_batch(rows(10), table, batch, partition_by="d", app_id="compact-test")
    finally:
        spark.conf.set(key, DELTA_CONF[key])
    after = table_stats(table)
    assert after["files"] == 1 and after["rows"] == 70, after
