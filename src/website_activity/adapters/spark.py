"""The one place a SparkSession is built, from ``spark.*`` in the configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from website_activity.adapters.jvm import jars, java_executable
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType


def spark_jars(settings: Settings) -> list[str]:
    """Spark's Kafka source, Delta Lake and their dependencies, as fetched by ``make setup``."""
    found = jars(settings.path("jvm") / "spark", "Spark Kafka source and Delta Lake")
    if not any(p.name.startswith("delta-spark") for p in found):
        raise PipelineError(f"Delta Lake jars missing in {settings.path('jvm') / 'spark'}: run 'make setup' first")
    return [str(p) for p in found]


# Delta Lake in every session: its SQL extension and catalog, and the properties each new table
# gets (writes bin-packed into fewer files, small files compacted after a commit: README "Ingest").
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.databricks.delta.properties.defaults.autoOptimize.optimizeWrite": "true",
    "spark.databricks.delta.properties.defaults.autoOptimize.autoCompact": "true",
    # A checkpoint of the log (the table's state as Parquet) every 100 commits, not Delta's 10:
    # writing one took 1.5-2 s of the batch that made the table's 10th commit, and three tables
    # made theirs in the same batch (10k-record batches on a 1M lake: median 7.2 s with 10, 4.9 s
    # with 100, docs/performance.md, sixth round). Reading a state rebuilds it from the last
    # checkpoint and the commits after it: 100 small JSON files are still one task's read.
    "spark.databricks.delta.properties.defaults.checkpointInterval": "100",
    # Compact once a partition has this many small files (a stream's batches).
    "spark.databricks.delta.autoCompact.minNumFiles": "50",
    # ...counted by the session, and only that count decides. With this on (Delta's default),
    # a partition the session has not compacted yet is compacted after any commit to it, and
    # a compaction that takes files older than the session drops the partition's count below
    # zero: Delta forgets it had compacted it, and compacts it again after the next commit. On
    # a lake from an earlier run every micro-batch rewrote its partitions' small files: silver's
    # day of 7 MB 2.5-5.5 s per 10k-record batch, quarantine's 1.5 s (docs/performance.md,
    # sixth round). Off: Delta compacts (every partition's small files) once a partition has
    # `minNumFiles` small files written by the session.
    "spark.databricks.delta.autoCompact.modifiedPartitionsOnly.enabled": "false",
    # Only files below this size count as small. Its default (half the 128 MB target) took a
    # 1M-record batch's four 25 MB bronze files right after their first commit: 14 s of the
    # batch, to write the same bytes again (docs/performance.md, fifth round). A stream's files
    # (kilobytes) are small.
    "spark.databricks.delta.autoCompact.minFileSize": str(16 * 1024 * 1024),
    # A table's state (its list of files, transactions) is rebuilt by a Spark job after each
    # commit and on each read; Delta shuffles the log into 50 partitions by default, about 1 s of
    # fixed cost per table per batch on 2 cores for a log of a few kilobytes. One partition per
    # core: 10k-record batches went from 10-13 s to 7-9 s (profile in docs/performance.md).
    # One: the log of a micro-batch table is a few small files, and a second task only adds a
    # shuffle.
    "spark.databricks.delta.snapshotPartitions": "1",
    # Parquet row groups of 16 MB, not 128: silver is one file per large batch, sorted by event
    # time, and a reader of a few minutes (the dedup, gold) skips the row groups whose times lie
    # outside (a 1M-event batch's file of 62 MB has four).
    "spark.hadoop.parquet.block.size": str(16 * 1024 * 1024),
    # ...by the row groups' statistics: Spark's default timestamp type in Parquet (INT96) has
    # none. Microseconds since the epoch (Parquet's TIMESTAMP type) have, and every Delta reader
    # (delta-rs, DuckDB, Power BI) reads them.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Gold's replaceWhere writes windows computed from exactly the rows of the predicate's range:
    # Delta's check that every written row matches it was one more Spark job per batch.
    "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "false",
}


def spark_schema(fields: list[dict[str, Any]]) -> "StructType":
    """The Spark schema used to parse the JSON value of each Kafka record.

    Args:
        fields: the event schema (``Settings.schema_fields``, from :mod:`website_activity.core.schema`).

    Returns:
        A ``StructType`` with one nullable column per declared field (nullability is checked
        after parsing, so that a missing field is quarantined with a reason instead of lost).
    """
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

    types = {"string": StringType(), "timestamp": TimestampType(), "integer": IntegerType()}
    return StructType([StructField(f["name"], types[f["type"]], True) for f in fields])


def kafka_options(settings: Settings) -> dict[str, str]:
    """Spark Kafka source options for ``kafka.security`` (none for PLAINTEXT; see
    :func:`website_activity.adapters.kafka_security.spark_kafka_options`)."""
    from website_activity.adapters.kafka_security import spark_kafka_options
    from website_activity.adapters.topics import ca_file, client_config

    client_config(settings)  # the credentials are set and, for SASL_SSL, the CA certificate is there
    return spark_kafka_options(settings["kafka"]["security"], ca_file(settings))


def spark_java(settings: Settings) -> str:
    """What the session needs before it starts: Java 17+ and the Kafka source's and Delta's jars.

    Raises:
        PipelineError: Java is missing or too old, or the jars were not fetched.
    """
    java = java_executable()
    spark_jars(settings)
    return java


# -- the driver's logging ----------------------------------------------------------------------
def log4j_config(settings: Settings) -> Path:
    """Our log4j2 configuration for the driver (``conf/log4j2.properties``)."""
    return settings.root / "conf" / "log4j2.properties"


def driver_logging(settings: Settings) -> dict[str, str]:
    """Session settings for the driver JVM's logging: our log4j2 file instead of Spark's default
    profile (which announces itself in three lines on stderr and logs known, harmless warnings)."""
    config = log4j_config(settings)
    if not config.is_file():
        return {}
    return {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={config.as_uri()}"}


# -- the driver JVM's start: class-data sharing ---------------------------------------------------
def class_archive(settings: Settings, java: str, jar_paths: list[str]) -> Path:
    """Where the driver's class-data sharing archive for this JDK and classpath lives.

    The archive (about 140 MB, in ``paths.jvm``/cds) holds the classes a stage's driver loaded,
    already parsed and verified: a JVM mapping it starts Spark in about 2 s less wall time and 3 s
    less CPU on 2 cores (measured here). Its name hashes the JDK and the jars, so a new JDK or a
    new jar gets a new archive instead of a mismatched one (which the JVM would ignore anyway).
    """
    import hashlib

    import pyspark

    key = "\n".join([os.path.realpath(java), pyspark.__version__, *jar_paths])
    return settings.path("jvm") / "cds" / f"spark-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsa"


def class_sharing_option(settings: Settings, java: str, jar_paths: list[str]) -> str:
    """The JVM option that maps the archive (empty when there is none, or sharing is off).

    Stages only read the archive; :func:`build_class_archive` (``make setup``) writes it, so no
    stage pays for writing 140 MB at its exit.
    """
    if not settings["spark"].get("class_data_sharing", False):
        return ""
    archive = class_archive(settings, java, jar_paths)
    return f"-XX:SharedArchiveFile={archive}" if archive.is_file() else ""


def build_class_archive(settings: Settings) -> Path | None:
    """Write the class-data sharing archive (``make setup``, when it is missing).

    Starts a driver that dumps the classes it loaded when it exits, runs the kind of work every
    stage does first (a Parquet write and read, an aggregation), and moves the archive into place
    once the JVM is gone (written under a temporary name: a stage never maps half an archive).

    Returns:
        The archive, or None when ``spark.class_data_sharing`` is off.
    """
    import tempfile

    if not settings["spark"].get("class_data_sharing", False):
        return None
    java = java_executable()
    archive = class_archive(settings, java, spark_jars(settings))
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    pending = archive.with_name(f"{archive.stem}.{os.getpid()}.tmp")
    spark = get_spark(settings, app_suffix="class-archive",
                      _jvm_option=f"-XX:ArchiveClassesAtExit={pending}")
    try:
        with tempfile.TemporaryDirectory(prefix="wa-cds-") as tmp:
            spark.range(1000).selectExpr("id", "id % 7 AS k").write.parquet(f"{tmp}/t")
            spark.read.parquet(f"{tmp}/t").groupBy("k").count().toPandas()
    finally:
        stop_spark(spark, timeout_s=600.0)  # the JVM writes the archive as it exits
    if not pending.is_file() or pending.stat().st_size == 0:
        pending.unlink(missing_ok=True)
        return None
    os.replace(pending, archive)
    return archive


def driver_java_options(settings: Settings) -> str:
    """``spark.driver_java_options`` with ``{root}`` replaced by the repository root (a file under
    ``conf/`` named in an option: the driver JVM's working folder may be another)."""
    return settings["spark"]["driver_java_options"].replace("{root}", str(settings.root))


def get_spark(settings: Settings, *, app_suffix: str = "", _jvm_option: str | None = None) -> "SparkSession":
    """Build (or reuse) the SparkSession.

    Args:
        settings: The merged configuration.
        app_suffix: Appended to ``spark.app_name`` to tell the stages apart.

    Raises:
        PipelineError: Java is missing or too old, or the Kafka jars were not fetched.
    """
    java = java_executable()
    master = settings["spark"]["master"]
    if master.startswith("local") or master.split("://")[-1].split(":")[0] in ("127.0.0.1", "localhost"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # stay on loopback
    os.environ.setdefault("JAVA_HOME", str(os.path.dirname(os.path.dirname(os.path.realpath(java)))))
    from pyspark.sql import SparkSession

    s = settings["spark"]
    builder = (
        SparkSession.builder.master(s["master"])
        .appName(s["app_name"] + (f"-{app_suffix}" if app_suffix else ""))
        .config("spark.driver.memory", s["driver_memory"])
        .config("spark.sql.shuffle.partitions", str(s["shuffle_partitions"]))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        # Compiled query code, reused when a later batch's plan generates the same source: the
        # default (100 entries) was smaller than one ingest batch's ~110 compilations, so every
        # batch compiled them all again (1.9 s of Janino per 10k batch; 0.35 s with the room).
        .config("spark.sql.codegen.cache.maxEntries", "1000")
        # HotSpot does not compile a method of more than 8,000 bytes of bytecode: it runs it
        # interpreted. Spark's default limit lets a whole-stage method grow to 64 KB, and the
        # quarantine rules (one coalesce of ~35 conditions) made one: 400k records took 2.45 s in
        # that one expression, 0.8 s evaluated operator by operator. At HotSpot's own limit Spark
        # falls back for that plan only (Spark's documentation suggests 8000 on HotSpot).
        .config("spark.sql.codegen.hugeMethodLimit", "8000")
        # Spark's Kafka source as local jars: no download at run time, same jars on every run.
        .config("spark.jars", ",".join(spark_jars(settings)))
    )
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    extra = dict(driver_logging(settings))
    options = driver_java_options(settings)
    if options:
        key = "spark.driver.extraJavaOptions"
        extra[key] = f"{extra.get(key, '')} {options}".strip()
    sharing = _jvm_option if _jvm_option is not None else class_sharing_option(settings, java, spark_jars(settings))
    if sharing:
        key = "spark.driver.extraJavaOptions"
        extra[key] = f"{extra.get(key, '')} {sharing}".strip()
    for key, value in s["conf"].items():  # e.g. executor memory and cores on a cluster
        if key in extra:  # the user's JVM options and ours, both
            value = f"{extra.pop(key)} {value}"
        builder = builder.config(str(key), str(value))
    for key, value in extra.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(s["log_level"])
    return spark


def stop_spark(spark: "SparkSession", timeout_s: float = 60.0) -> None:
    """Stop the session and wait for its JVM to exit.

    ``SparkSession.stop`` leaves the driver JVM to notice on its own that Python went away;
    closing the gateway's stdin tells it now, and waiting makes sure no Spark process outlives
    the stage (or the test session).
    """
    from pyspark import SparkContext

    from website_activity.adapters.lake import settle

    settle()  # Delta state computed ahead for the next write: let it finish, not fail mid-stop
    spark.stop()
    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if gateway is not None:
        gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
    if proc is not None:
        if proc.stdin is not None:
            proc.stdin.close()  # the JVM exits when its stdin closes
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- one session for several stages (make all) --------------------------------------------------
_SHARED: dict[str, Any] = {}


@contextmanager
def shared_session() -> Iterator[None]:
    """Within this block, :func:`spark_session` starts one session and lends it to every stage
    instead of a session (and a JVM) per stage; the session stops when the block ends.

    ``make all`` runs its Spark stages this way: each stage's JVM start, Delta and codegen warm-up
    and library imports are paid once instead of five times. The driver JVM inherits the process's
    stdout and stderr when it starts, and a stage's output goes to that stage's log: the JVM writes
    into pipes instead, whose lines are copied to whatever descriptors 1 and 2 are at the time (the
    log of the stage that is running, or the terminal with ``VERBOSE``).
    """
    _SHARED.clear()
    _SHARED["on"] = True
    try:
        yield
    finally:
        spark = _SHARED.pop("spark", None)
        try:
            if spark is not None:
                stop_spark(spark)
        finally:
            for thread in _SHARED.pop("forwarders", []):
                thread.join(timeout=10)
            for fd in _SHARED.pop("spare_fds", []):
                os.close(fd)
            _SHARED.clear()


def _forward(source: int, target: dict[str, int], key: str) -> None:
    """Copy a pipe to ``target[key]`` (a descriptor that may change) until the JVM closes it."""
    with os.fdopen(source, "rb", buffering=0) as pipe:
        for chunk in iter(lambda: pipe.read(65536), b""):
            target[f"{key}-busy"] = True
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(target[key], view):]
            except OSError:
                pass  # the terminal or log went away: the JVM's lines are not the stage's result
            target[f"{key}-busy"] = False


def _drain(timeout_s: float = 1.0) -> None:
    """Wait until the JVM's lines written so far are copied, so that they land in the log of the
    stage that caused them and not the next one's."""
    import fcntl
    import struct
    import termios
    import time

    target, reads = _SHARED.get("target"), _SHARED.get("read_fds", [])
    if target is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pending = sum(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0] for fd in reads)
        except OSError:
            return  # a pipe is closed: the JVM is gone
        if pending == 0 and not target.get("out-busy") and not target.get("err-busy"):
            return
        time.sleep(0.01)


def _start_shared(settings: Settings, app_suffix: str) -> "SparkSession":
    """Start the shared session's JVM with its stdout and stderr on pipes (see :func:`shared_session`)."""
    import threading

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {"out": os.dup(1), "err": os.dup(2)}
    _SHARED["spare_fds"] = list(saved.values())
    target = dict(saved)  # while descriptors 1 and 2 are the pipes themselves: the stage's own
    threads = []
    pipes = {}
    _SHARED["target"], _SHARED["read_fds"] = target, []
    for key, fd in (("out", 1), ("err", 2)):
        read_end, write_end = os.pipe()
        pipes[key] = (fd, write_end)
        _SHARED["read_fds"].append(read_end)
        t = threading.Thread(target=_forward, args=(read_end, target, key), name=f"jvm-{key}", daemon=True)
        t.start()
        threads.append(t)
    _SHARED["forwarders"] = threads
    try:
        for fd, write_end in pipes.values():
            os.dup2(write_end, fd)
        return get_spark(settings, app_suffix=app_suffix)
    finally:
        os.dup2(saved["out"], 1)
        os.dup2(saved["err"], 2)
        for _, write_end in pipes.values():
            os.close(write_end)  # the JVM holds the only copies now: its exit ends the forwarders
        target.update(out=1, err=2)


@contextmanager
def spark_session(settings: Settings, app_suffix: str = "") -> Iterator["SparkSession"]:
    """A SparkSession for one stage, stopped with its JVM when the stage ends (scripts use this).

    Inside :func:`shared_session`, the one shared session instead: started by the first stage,
    its cached tables dropped when each stage ends, stopped when the block ends.
    """
    if _SHARED.get("on"):
        spark = _SHARED.get("spark")
        if spark is None:
            spark = _SHARED["spark"] = _start_shared(settings, app_suffix)
        try:
            yield spark
        finally:
            spark.catalog.clearCache()
            _drain()
        return
    spark = get_spark(settings, app_suffix=app_suffix)
    try:
        yield spark
    finally:
        stop_spark(spark)
