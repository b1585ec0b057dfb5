"""Exposure: every server the pipeline starts listens on loopback only, unless configured otherwise.

The listening sockets of each process (the embedded broker, the Spark driver JVM, the MLflow UI
and its workers) are read from /proc, so a port opened on 0.0.0.0 or a public address fails the
test whatever the server's own settings claim."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_ingest_crash import children
from website_activity.devtools.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]


def _addr(hex_addr: str) -> str:
    """An address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)


def listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of ``pids`` holds."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host, port = local.split(":")
                out.add((_addr(host), int(port, 16)))
    return out


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_broker_listens_on_loopback_only(broker: EmbeddedBroker) -> None:
    socks = listening([broker.pid()])
    assert {p for _, p in socks} >= {broker.port, broker.controller_port}
    assert all(loopback(a) for a, _ in socks), socks


def test_spark_driver_listens_on_loopback_only(spark) -> None:
    # the py4j gateway, the driver's RPC endpoint and its block manager (the UI is off)
    from pyspark import SparkContext

    jvm = SparkContext._gateway.proc.pid
    socks = listening([jvm, *children(jvm)])
    assert len(socks) >= 2, socks
    assert all(loopback(a) for a, _ in socks), socks


def test_mlflow_ui_listens_on_loopback_only(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA__")}
    env.update(WA__MLFLOW__TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               WA__MLFLOW__ARTIFACT_ROOT=str(tmp_path / "mlruns"), WA_ROOT=str(ROOT))
    log = tmp_path / "ui.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "mlflow_ui.py"), "--ui-port", str(port)],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        socks: set[tuple[str, int]] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            socks = listening([proc.pid, *children(proc.pid)])
            if port in {p for _, p in socks}:
                break
            time.sleep(0.5)
        assert port in {p for _, p in socks}, log.read_text()[-2000:]
        assert all(loopback(a) for a, _ in socks), socks
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers: the group this test started
        proc.wait(timeout=30)
