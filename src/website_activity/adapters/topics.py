"""Kafka topics: create them (idempotent) and delete them (for a fresh run)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.adapters.kafka_security import kafka_python_config
from website_activity.core.config import Settings, require_credentials
from website_activity.core.errors import PipelineError

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

log = logging.getLogger(__name__)


def ca_file(settings: Settings) -> Path:
    """The PEM file of the CA that signed the broker's certificate (``kafka.security.ca_file``, or
    the embedded broker's own CA, made by ``make kafka-up``)."""
    conf = settings["kafka"]["security"]["ca_file"]
    if conf:
        p = Path(conf)
        return p if p.is_absolute() else settings.root / p
    return settings.path("kafka_home") / "tls" / "ca.pem"


def quiet_kafka_connections() -> None:
    """kafka-python logs every failed connection attempt (tens of lines while a broker is away);
    the stages count what was not delivered and end in one line of their own instead."""
    logging.getLogger("kafka.net").setLevel(logging.CRITICAL)


def client_config(settings: Settings) -> dict[str, Any]:
    """kafka-python settings for ``kafka.security``: none for PLAINTEXT; TLS (the CA's certificate,
    host name checked) and a SCRAM login for SASL_SSL.

    Raises:
        PipelineError: SASL_SSL without the CA's certificate.
    """
    sec = settings["kafka"]["security"]
    if sec["protocol"] == "PLAINTEXT":
        return {}
    require_credentials(sec)
    ca = ca_file(settings)
    if not ca.is_file():
        hint = ("start the broker with 'make kafka-up PROFILE=secure' (it makes the CA)"
                if settings["kafka"]["mode"] == "embedded" else "set kafka.security.ca_file")
        raise PipelineError(f"kafka.security.protocol is SASL_SSL but the CA certificate {ca} is missing: {hint}")
    return kafka_python_config(sec, ca)


def admin_client(settings: Settings) -> "KafkaAdminClient":
    """A kafka-python admin client, or a clear error when no broker answers in time."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = settings["kafka"]["request_timeout_s"] * 1000
    config = client_config(settings)
    with BootstrapErrors() as seen:
        try:
            return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                    request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                                    client_id="website-activity-admin", **config)
        except (KafkaError, OSError) as exc:
            raise PipelineError(connect_failure(settings, exc, seen.errors)) from exc


class BootstrapErrors(logging.Handler):
    """Why kafka-python's bootstrap attempts failed: it logs each cause (a refused login, a TLS
    failure) and then raises a bare timeout. Used as a context manager around a client's start."""

    LOGGER = "kafka.net.manager"

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors += [a for a in args if isinstance(a, BaseException)]

    def __enter__(self) -> "BootstrapErrors":
        logger = logging.getLogger(self.LOGGER)
        self._saved = (logger.level, logger.propagate)
        # heard here even when kafka.net is quieted (quiet_kafka_connections), shown nowhere else
        logger.setLevel(logging.WARNING)
        logger.propagate = False
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger(self.LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]


def no_broker_message(settings: Settings, exc: BaseException | None = None,
                      causes: list[BaseException] | None = None) -> str:
    """One line for a client that could not reach the broker: a refused login and a TLS failure
    are named as such (never with the password); anything else is "no broker answers"."""
    from kafka.errors import SaslAuthenticationFailedError

    servers, sec = settings.bootstrap_servers, settings["kafka"]["security"]
    for cause in reversed(causes or []):
        if isinstance(cause, SaslAuthenticationFailedError):
            return (f"the Kafka broker at {servers} refused the login of user '{sec['username']}' "
                    f"({sec['sasl_mechanism']}): check kafka.security.username and kafka.security.password")
        if "CERTIFICATE_VERIFY_FAILED" in str(cause):
            return (f"the TLS certificate of the Kafka broker at {servers} is not signed by the CA in "
                    f"{ca_file(settings)} (or does not name the host): check kafka.security.ca_file")
    why = f" ({type(exc).__name__})" if exc is not None else ""
    hint = ("start it with 'make kafka-up'" if settings["kafka"]["mode"] == "embedded"
            else "check kafka.bootstrap_servers")
    return f"no Kafka broker answers at {servers}{why}: {hint}"


def connect_failure(settings: Settings, exc: BaseException, causes: list[BaseException]) -> str:
    """:func:`no_broker_message`, after a closer look when a SASL_SSL client saw no cause.

    A broker that refuses a login answers and closes the connection at once, and kafka-python
    often sees only the close ("socket disconnected"): more short attempts, for up to 10 s, tell
    a refused login apart from a broker that is not there.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, SaslAuthenticationFailedError

    known = any(isinstance(c, SaslAuthenticationFailedError) or "CERTIFICATE_VERIFY_FAILED" in str(c)
                for c in causes)
    if settings["kafka"]["security"]["protocol"] == "PLAINTEXT" or known:
        return no_broker_message(settings, exc, causes)
    if not any(isinstance(c, KafkaError) and "disconnected" in str(c) for c in causes):
        return no_broker_message(settings, exc, causes)  # nothing answered at all
    causes = list(causes)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with BootstrapErrors() as seen:
            try:
                KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=2000,
                                 bootstrap_timeout_ms=2000, **client_config(settings)).close()
            except (KafkaError, OSError):
                pass
        causes += seen.errors
        if any(isinstance(c, SaslAuthenticationFailedError) for c in seen.errors):
            break
    return no_broker_message(settings, exc, causes)


def create_topics(settings: Settings) -> dict[str, str]:
    """Create the configured topics that do not exist yet.

    Returns:
        ``{topic: "created" | "exists"}``.
    """
    from kafka.admin import NewTopic

    t = settings["topics"]
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        result = {}
        configs = {"min.insync.replicas": str(t["min_insync_replicas"])}
        new = [NewTopic(name, t["partitions"], t["replication_factor"], topic_configs=configs)
               for name in settings.topics if name not in existing]
        # A topic still being deleted cannot be created yet: retry for a bounded time.
        deadline = time.monotonic() + 60
        while new:
            from kafka.errors import TopicAlreadyExistsError

            try:
                admin.create_topics(new, timeout_ms=30000)
                for nt in new:
                    result[nt.name] = "created"
                break
            except TopicAlreadyExistsError:
                existing = set(admin.list_topics())
                for nt in new:
                    if nt.name in existing:
                        result[nt.name] = "exists"
                new = [nt for nt in new if nt.name not in existing]
                if time.monotonic() > deadline:
                    raise PipelineError("topics are still being deleted after 60 s: try again")
                time.sleep(0.5)
        for name in settings.topics:
            result.setdefault(name, "exists")
        admin.wait_for_topics(settings.topics, timeout_ms=30000)
        return result
    finally:
        admin.close()


def delete_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Delete the configured topics that exist and wait until they are gone."""
    admin = admin_client(settings)
    try:
        doomed = [name for name in settings.topics if name in set(admin.list_topics())]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=30000)
        deadline = time.monotonic() + timeout_s
        while set(doomed) & set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise PipelineError(f"topics {doomed} still exist {timeout_s:.0f}s after deletion")
            time.sleep(0.3)
        return doomed
    finally:
        admin.close()


def check_topics(settings: Settings) -> None:
    """The broker answers and every configured topic exists (ingest's check before Spark starts).

    Spark's Kafka source would wait on a broker that does not answer, and read nothing from a topic
    that does not exist; this says so in one line instead.

    Raises:
        PipelineError: No broker answers, or a topic is missing.
    """
    from kafka.errors import KafkaError

    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
    except (KafkaError, OSError) as exc:
        raise PipelineError(no_broker_message(settings, exc)) from exc
    finally:
        admin.close()
    missing = [t for t in settings.topics if t not in existing]
    if missing:
        raise PipelineError(f"topic{'s' if len(missing) > 1 else ''} {', '.join(repr(t) for t in missing)} "
                            f"not found on {settings.bootstrap_servers}: run 'make topics'")


def topic_offsets(settings: Settings) -> dict[str, dict[int, tuple[int, int]]]:
    """Each configured topic's partitions: ``{topic: {partition: (first offset, end offset)}}``.

    Raises:
        PipelineError: No broker answers in time.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    timeout_ms = settings["kafka"]["request_timeout_s"] * 1000
    with BootstrapErrors() as seen:
        try:
            consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=timeout_ms,
                                     client_id="website-activity-offsets", enable_auto_commit=False,
                                     **client_config(settings))
        except (KafkaError, OSError) as exc:
            raise PipelineError(connect_failure(settings, exc, seen.errors)) from exc
    try:
        parts = [TopicPartition(t, p) for t in settings.topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        first, end = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
    except (KafkaError, OSError) as exc:
        raise PipelineError(no_broker_message(settings, exc)) from exc
    finally:
        consumer.close()
    out: dict[str, dict[int, tuple[int, int]]] = {t: {} for t in settings.topics}
    for tp in parts:
        out[tp.topic][tp.partition] = (first[tp], end[tp])
    return out
