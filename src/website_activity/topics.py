"""Kafka topics: create them (idempotent) and delete them (for a fresh run)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from website_activity.config import Settings
from website_activity.errors import PipelineError

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


def client_config(settings: Settings) -> dict[str, Any]:
    """kafka-python settings for ``kafka.security``: none for PLAINTEXT; TLS (the CA's certificate,
    host name checked) and a SCRAM login for SASL_SSL.

    Raises:
        PipelineError: SASL_SSL without the CA's certificate.
    """
    sec = settings["kafka"]["security"]
    if sec["protocol"] == "PLAINTEXT":
        return {}
    ca = ca_file(settings)
    if not ca.is_file():
        hint = ("start the broker with 'make kafka-up PROFILE=secure' (it makes the CA)"
                if settings["kafka"]["mode"] == "embedded" else "set kafka.security.ca_file")
        raise PipelineError(f"kafka.security.protocol is SASL_SSL but the CA certificate {ca} is missing: {hint}")
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": sec["sasl_mechanism"],
            "sasl_plain_username": sec["username"], "sasl_plain_password": sec["password"],
            "ssl_cafile": str(ca), "ssl_check_hostname": True}


def admin_client(settings: Settings) -> "KafkaAdminClient":
    """A kafka-python admin client, or a clear error when no broker answers in time."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = settings["kafka"]["request_timeout_s"] * 1000
    try:
        return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                                client_id="website-activity-admin", **client_config(settings))
    except (KafkaError, OSError) as exc:
        raise PipelineError(no_broker_message(settings, exc)) from exc


def no_broker_message(settings: Settings, exc: BaseException | None = None) -> str:
    why = f" ({type(exc).__name__})" if exc is not None else ""
    hint = ("start it with 'make kafka-up'" if settings["kafka"]["mode"] == "embedded"
            else "check kafka.bootstrap_servers")
    return f"no Kafka broker answers at {settings.bootstrap_servers}{why}: {hint}"


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
