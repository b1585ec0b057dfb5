"""What every script in ``scripts/`` shares: common options, logging, one-line errors.

A stage's terminal shows only its own lines. Everything else it writes (Python logging, warnings,
library prints, the Spark JVM's stdout and stderr: log4j, the JDK's warnings, Java traces) goes
to its log file ``<paths.logs>/<stage>.log``, rewritten on each run, which the stage's last line
names when it fails. ``WA_VERBOSE=1`` (``make ... VERBOSE=1``) leaves everything on the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from website_activity.adapters.topics import quiet_kafka_connections
from website_activity.core.config import Settings, load_config
from website_activity.core.errors import PipelineError, first_line

log = logging.getLogger("website_activity")

VERBOSE_ENV = "WA_VERBOSE"
# Library loggers kept at WARNING even in the stage's log file: their INFO lines are many and say
# nothing about our run (alembic's migrations, GX's context set-up, every kafka-python connection).
NOISY_LOGGERS = ("py4j", "kafka", "great_expectations", "alembic", "mlflow", "urllib3")
# Stages that keep their output on the terminal: the MLflow UI server replaces the script's process,
# and its own lines (the address it serves on, a port already taken) are what the user came for.
UNROUTED_STAGES = ("mlflow-ui",)
# Progress bars of libraries (GX computing metrics, MLflow moving artifacts) are off unless VERBOSE.
QUIET_LIBRARY_ENV = {"TQDM_DISABLE": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


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


def verbose() -> bool:
    """``WA_VERBOSE`` is set to something other than empty or 0 (``make ... VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0", "false", "no")


def setup_logging(level: int = logging.INFO, stream: Any = None) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=stream or sys.stderr)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_kafka_connections()


class _Tee(io.RawIOBase):
    """Bytes to several file descriptors: the terminal first (whose tty-ness it reports), then the log."""

    def __init__(self, *fds: int) -> None:
        super().__init__()
        self.fds = fds

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self.fds[0])

    def fileno(self) -> int:
        return self.fds[0]

    def write(self, data: Any) -> int:
        data = bytes(data)
        for fd in self.fds:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        return len(data)


def _text(raw: io.RawIOBase) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace",
                            line_buffering=True)


def stage_log_path(settings: Settings, stage: str) -> Path:
    """Where a stage's log goes: ``<paths.logs>/<stage>.log``."""
    return settings.path("logs") / f"{stage}.log"


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def route_output(path: Path) -> tuple[int, int]:
    """Send file descriptors 1 and 2 to ``path``, and Python's ``sys.stdout`` to both the terminal
    and ``path``.

    The Spark JVM and child processes inherit descriptors 1 and 2, so their output lands in the
    file; the script's own lines (``click.echo`` on ``sys.stdout``, and :func:`echo_err`) reach the
    terminal too.

    Returns:
        Descriptors of the terminal's stdout and stderr (duplicates of the original 1 and 2).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    terminal_out, terminal_err = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = _text(_Tee(terminal_out, 1))
    # sys.stderr stays on descriptor 2 (the log): libraries print there (MLflow's "Created version",
    # its own logging handler). The stage's own error lines go through :func:`echo_err`.
    _TERMINAL["err"] = _text(_Tee(terminal_err, 2))
    os.environ.update(QUIET_LIBRARY_ENV)
    return terminal_out, terminal_err


_TERMINAL: dict[str, Any] = {}


def echo_err(message: str) -> None:
    """One of the stage's own lines for stderr: on the terminal (and in the log when routed)."""
    click.echo(message, file=_TERMINAL.get("err") or sys.stderr)


def _stage_log(stage: str, kwargs: dict[str, Any]) -> Path | None:
    """The log file to route this run's output to, or None to leave it on the terminal.

    None with ``VERBOSE``, for :data:`UNROUTED_STAGES`, when the streams are not the process's own
    (click's test runner, pytest's capture) and when the configuration does not load (the stage
    then reports that error itself, on the terminal).
    """
    if verbose() or stage in UNROUTED_STAGES:
        return None
    if sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__:
        return None
    try:
        if sys.stdout.fileno() != 1 or sys.stderr.fileno() != 2:
            return None
        settings = load_config(kwargs.get("profile"), {"kafka.port": kwargs.get("port")})
        path = stage_log_path(settings, stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    except (PipelineError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _log_to_file(stage: str, terminal_err: int) -> None:
    """Python logging (ours and the libraries') into the stage's log (descriptor 2 now); our own
    warnings on the terminal as well, as ``<stage>: WARNING: ...``."""
    setup_logging(stream=_text(_Tee(2)))
    logging.captureWarnings(True)  # FutureWarnings of pandas, GX, MLflow: into the log
    to_terminal = logging.StreamHandler(_text(_Tee(terminal_err)))
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter(f"{stage}: %(levelname)s: %(message)s"))
    log.addHandler(to_terminal)


@contextlib.contextmanager
def stage_output(stage: str, kwargs: dict[str, Any]) -> Iterator[Path | None]:
    """Route this stage's output to its log (see the module's docstring) for the ``with`` block,
    and put the terminal, Python's streams and logging back as they were afterwards, so that the
    next stage of the same process (``make all`` runs the Spark stages in one) gets its own log.

    Yields:
        The stage's log file, or None when the output stays on the terminal.
    """
    path = _stage_log(stage, kwargs)
    if path is None:
        setup_logging()
        yield None
        return
    root, ours = logging.getLogger(), logging.getLogger("website_activity")
    before = (list(root.handlers), list(ours.handlers), root.level)
    terminal_out, terminal_err = route_output(path)
    _log_to_file(stage, terminal_err)
    try:
        yield path
    finally:
        for stream in (sys.stdout, _TERMINAL.get("err"), sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        logging.captureWarnings(False)
        for logger, handlers in ((root, before[0]), (ours, before[1])):
            for handler in [h for h in logger.handlers if h not in handlers]:
                logger.removeHandler(handler)
        root.setLevel(before[2])
        sys.stdout = sys.__stdout__
        _TERMINAL.clear()
        os.dup2(terminal_out, 1)
        os.dup2(terminal_err, 2)
        os.close(terminal_out)
        os.close(terminal_err)


def main_wrapper(stage: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Route the stage's output (:func:`stage_output`) and turn a :class:`PipelineError` into one
    line on stderr and a non-zero exit; that line names the stage's log."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with stage_output(stage, kwargs) as path:
                where = f" (log: {_display(path)})" if path is not None else ""
                try:
                    return func(*args, **kwargs)
                except PipelineError as exc:
                    echo_err(f"{stage}: error: {exc}{where}")
                    sys.exit(exc.exit_code)
                except KeyboardInterrupt:
                    echo_err(f"{stage}: interrupted{where}")
                    sys.exit(130)
                except Exception as exc:
                    if path is None:
                        raise  # on the terminal already: the whole traceback
                    # The traceback into the log only (a logger outside ours: no terminal handler).
                    logging.getLogger("stage").exception("%s failed", stage)
                    echo_err(f"{stage}: error: unexpected {type(exc).__name__}: {first_line(exc)} "
                             f"(traceback in {_display(path)})")
                    sys.exit(1)
        return wrapper
    return decorate
