"""Fixtures of the fault and security suite: the integration suite's session broker, reused."""

from tests.integration.conftest import broker, kafka_settings  # noqa: F401  (fixtures)
