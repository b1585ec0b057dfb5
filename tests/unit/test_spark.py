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
