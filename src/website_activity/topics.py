"""Kafka topics: create them (idempotent) and delete them (for a fresh run)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from website_activity.config import Settings
from website_activity.errors import PipelineError

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

log = logging.getLogger(__name__)


def admin_client(settings: Settings) -> "KafkaAdminClient":
    """A kafka-python admin client, or a clear error when no broker answers in time."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = settings["kafka"]["request_timeout_s"] * 1000
    try:
        return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                                client_id="website-activity-admin")
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
