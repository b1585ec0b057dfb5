"""What every script in ``scripts/`` shares: common options, logging, one-line errors."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable

import click

from website_activity.config import Settings, load_config
from website_activity.errors import PipelineError

log = logging.getLogger("website_activity")


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--profile`` and ``--port`` (the broker's port) to a click command."""
    func = click.option("--port", type=int, default=None,
                        help="Kafka broker port (overrides kafka.port).")(func)
    func = click.option("--profile", default=None,
                        help="Configuration profile in conf/profiles (default: $PROFILE or local).")(func)
    return func


def settings_from(profile: str | None, port: int | None, **overrides: Any) -> Settings:
    merged = {"kafka.port": port}
    merged.update(overrides)
    return load_config(profile, merged)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("py4j", "kafka", "great_expectations", "alembic", "mlflow", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_kafka_connections()


def quiet_kafka_connections() -> None:
    """kafka-python logs every failed connection attempt (tens of lines while a broker is away);
    the stages count what was not delivered and end in one line of their own instead."""
    logging.getLogger("kafka.net").setLevel(logging.CRITICAL)


def main_wrapper(stage: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn a :class:`PipelineError` into one line on stderr and a non-zero exit."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            setup_logging()
            try:
                return func(*args, **kwargs)
            except PipelineError as exc:
                click.echo(f"{stage}: error: {exc}", err=True)
                sys.exit(exc.exit_code)
            except KeyboardInterrupt:
                click.echo(f"{stage}: interrupted", err=True)
                sys.exit(130)

        return wrapper

    return decorate
