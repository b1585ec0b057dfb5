"""A real Kafka broker (the embedded KRaft one) on free loopback ports, for the whole session."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings
from website_activity.core.config import Settings
from website_activity.devtools.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, settings: Settings):
    home = tmp_path_factory.mktemp("broker")
    b = EmbeddedBroker(home=home, jvm_dir=settings.path("jvm") / "broker",
                       port=free_port(), controller_port=free_port(), heap="384m")
    b.start()
    yield b
    b.stop()
    assert b.pid() is None


@pytest.fixture
def kafka_settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings for one test: the session broker, topics of its own, a lake of its own."""
    tag = uuid.uuid4().hex[:8]
    return make_settings(tmp_path, kafka__port=broker.port, kafka__controller_port=broker.controller_port,
                         topics__names=[f"a-{tag}", f"b-{tag}"])
