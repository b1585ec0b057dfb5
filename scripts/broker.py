"""make kafka-up / kafka-down / kafka-status: the embedded Kafka broker (KRaft)."""

import click

from website_activity.cli import common_options, main_wrapper, settings_from
from website_activity.core.errors import PipelineError
from website_activity.devtools.broker import EmbeddedBroker, broker_ready


@click.command()
@common_options
@click.argument("action", type=click.Choice(["up", "down", "status"]))
@main_wrapper("broker")
def main(profile, port, action):
    """Start (up), stop (down) or check (status) the embedded broker."""
    settings = settings_from(profile, port)
    if settings["kafka"]["mode"] != "embedded":
        click.echo(f"broker: kafka.mode is '{settings['kafka']['mode']}' (profile {settings['profile']}): "
                   f"the broker at {settings.bootstrap_servers} is not ours, nothing to do")
        return
    broker = EmbeddedBroker.from_settings(settings)
    if action == "up":
        pid = broker.start()
        click.echo(f"broker: up at {broker.bootstrap} (pid {pid}, log {broker.log_file})")
    elif action == "down":
        stopped = broker.stop()
        click.echo("broker: stopped" if stopped else "broker: was not running")
    else:
        pid = broker.pid()
        if pid is not None and broker_ready(broker.bootstrap, **broker.client_config()):
            click.echo(f"broker: up at {broker.bootstrap} (pid {pid})")
        elif pid is not None:
            raise PipelineError(f"broker process {pid} runs but does not answer at {broker.bootstrap}")
        else:
            click.echo(f"broker: down ({broker.bootstrap})")
            raise SystemExit(1)


if __name__ == "__main__":
    main()
