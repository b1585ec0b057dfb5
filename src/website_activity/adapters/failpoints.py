"""Named crash points, for the fault tests only.

``WA_FAILPOINT=<name>@<n>`` makes the n-th passage through :func:`failpoint` ``name`` SIGKILL the
Spark driver JVM and then this process: a crash at an exact point of a micro-batch, with no
clean-up and no ``finally``. ``<name>@<n>+<seconds>`` kills that many seconds after the passage
instead, from a timer thread: a crash in the middle of the JVM work that follows the point (an
OPTIMIZE). Unset (always, outside tests/reliability), it does nothing.
"""

from __future__ import annotations

import os
import signal
import threading

_passes: dict[str, int] = {}


def failpoint(name: str) -> None:
    spec = os.environ.get("WA_FAILPOINT")
    if not spec:
        return
    wanted, _, when = spec.rpartition("@")
    if wanted != name:
        return
    nth, _, delay = when.partition("+")
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == int(nth):
        if delay:
            threading.Timer(float(delay), _crash).start()
        else:
            _crash()


def _crash() -> None:
    from pyspark import SparkContext

    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is not None:  # the JVM first: it must not write anything after the "crash"
        os.kill(proc.pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
