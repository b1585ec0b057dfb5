"""The one place a SparkSession is built, from ``spark.*`` in the configuration."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from website_activity.config import Settings
from website_activity.jvm import jars, java_executable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_jars(settings: Settings) -> list[str]:
    """Spark's Kafka source and its dependencies, as fetched by ``make setup``."""
    return [str(p) for p in jars(settings.path("jvm") / "spark", "Spark Kafka source")]


def kafka_options(settings: Settings) -> dict[str, str]:
    """Spark Kafka source options for ``kafka.security`` (none for PLAINTEXT).

    SASL_SSL: the SCRAM login as a JAAS line, and the CA's PEM certificate as the truststore
    (kafka-clients reads PEM truststores). The JAAS line holds the password: Spark passes it to
    the Kafka client, whose logged configuration shows it as ``[hidden]``.
    """
    from website_activity.topics import ca_file, client_config

    sec = settings["kafka"]["security"]
    if sec["protocol"] == "PLAINTEXT":
        return {}
    client_config(settings)  # the CA certificate is there
    quote = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731  (JAAS string literal)
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{quote(sec["username"])}" password="{quote(sec["password"])}";')
    return {"kafka.security.protocol": "SASL_SSL", "kafka.sasl.mechanism": sec["sasl_mechanism"],
            "kafka.sasl.jaas.config": jaas, "kafka.ssl.truststore.type": "PEM",
            "kafka.ssl.truststore.location": str(ca_file(settings))}


def spark_java(settings: Settings) -> str:
    """What the session needs before it starts: Java 17+ and the Kafka source's jars.

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


def class_sharing_options(settings: Settings, java: str, jar_paths: list[str]) -> tuple[str, Path | None]:
    """The JVM option that uses the archive, or that writes it when this JVM exits.

    Returns:
        The option (empty when ``spark.class_data_sharing`` is off) and, when this run writes the
        archive, the temporary file that :func:`stop_spark` renames into place once the JVM is gone
        (two stages starting at once each write their own; the last rename wins).
    """
    if not settings["spark"].get("class_data_sharing", False):
        return "", None
    archive = class_archive(settings, java, jar_paths)
    if archive.is_file():
        return f"-XX:SharedArchiveFile={archive}", None
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return "", None  # a read-only paths.jvm: start without sharing
    pending = archive.with_name(f"{archive.stem}.{os.getpid()}.tmp")
    return f"-XX:ArchiveClassesAtExit={pending}", pending


_PENDING_ARCHIVE: dict[str, Path] = {}


def _settle_archive() -> None:
    """After the driver JVM exited: move an archive it wrote into place."""
    pending = _PENDING_ARCHIVE.pop("path", None)
    if pending is None:
        return
    if pending.is_file() and pending.stat().st_size > 0:
        os.replace(pending, pending.with_name(pending.name.split(".")[0] + ".jsa"))
    else:
        pending.unlink(missing_ok=True)


def get_spark(settings: Settings, *, app_suffix: str = "") -> "SparkSession":
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
        # Spark's Kafka source as local jars: no download at run time, same jars on every run.
        .config("spark.jars", ",".join(spark_jars(settings)))
    )
    extra = dict(driver_logging(settings))
    sharing, pending = class_sharing_options(settings, java, spark_jars(settings))
    if sharing and SparkSession.getActiveSession() is None:
        key = "spark.driver.extraJavaOptions"
        extra[key] = f"{extra.get(key, '')} {sharing}".strip()
        if pending is not None:
            _PENDING_ARCHIVE["path"] = pending
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
        _settle_archive()


@contextmanager
def spark_session(settings: Settings, app_suffix: str = "") -> Iterator["SparkSession"]:
    """A SparkSession for one stage, stopped with its JVM when the stage ends (scripts use this)."""
    spark = get_spark(settings, app_suffix=app_suffix)
    try:
        yield spark
    finally:
        stop_spark(spark)
