"""The local cluster harness: a 3-broker KRaft Kafka cluster and a Spark standalone cluster.

``make cluster-up`` starts, on loopback and from the jars the project already has:

* **Kafka**: ``cluster.kafka_ports`` brokers (3 by default), each a combined broker+controller
  node of one static KRaft quorum, internal topics replicated 3 times; the ``cluster`` profile
  creates the pipeline's topics with replication factor 3 and ``min.insync.replicas=2``, so
  one broker may die without losing an acknowledged record.
* **Spark standalone**: a master (``org.apache.spark.deploy.master.Master``) and
  ``cluster.workers`` workers (``org.apache.spark.deploy.worker.Worker``), run with the pip
  pyspark's own ``bin/spark-class``: the same Spark the driver uses, so versions always agree.

Every process writes its pid under ``paths.cluster_home`` and is stopped by that pid (after
checking ``/proc/<pid>/cmdline`` names our configuration), never by name. The ``cluster``
profile (``conf/profiles/cluster.yaml``) points the pipeline at this harness; on a real cluster
the same profile is pointed at real hosts in ``conf/local/`` and the harness is not used.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from website_activity.adapters.jvm import java_executable
from website_activity.core.config import Settings
from website_activity.core.errors import PipelineError
from website_activity.devtools.broker import EmbeddedBroker, broker_ready, is_zombie, new_cluster_id, port_in_use

log = logging.getLogger(__name__)


# -- Kafka --------------------------------------------------------------------------------------
@dataclass
class KafkaCluster:
    """``len(ports)`` KRaft nodes on ``host``, node ``i`` at ``ports[i]`` / ``controller_ports[i]``."""

    home: Path
    jvm_dir: Path
    ports: list[int]
    controller_ports: list[int]
    host: str = "127.0.0.1"
    heap: str = "384m"
    startup_timeout_s: float = 90.0
    nodes: list[EmbeddedBroker] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.ports) != len(self.controller_ports) or not self.ports:
            raise PipelineError("cluster.kafka_ports and cluster.controller_ports must have the same, "
                                "non-zero length")
        id_file = self.home / "cluster.id"
        if id_file.exists():
            cluster_id = id_file.read_text().strip()
        else:
            cluster_id = new_cluster_id()
            self.home.mkdir(parents=True, exist_ok=True)
            id_file.write_text(cluster_id)
        voters = tuple((i + 1, cp) for i, cp in enumerate(self.controller_ports))
        self.nodes = [
            EmbeddedBroker(home=self.home / f"kafka-{i + 1}", jvm_dir=self.jvm_dir, host=self.host,
                           port=p, controller_port=cp, heap=self.heap,
                           startup_timeout_s=self.startup_timeout_s, node_id=i + 1, voters=voters,
                           cluster_id=cluster_id, replication=min(3, len(self.ports)),
                           port_keys=("cluster.kafka_ports", "cluster.controller_ports"),
                           down_command="make cluster-down")
            for i, (p, cp) in enumerate(zip(self.ports, self.controller_ports))
        ]

    @classmethod
    def from_settings(cls, settings: Settings) -> "KafkaCluster":
        c = settings["cluster"]
        return cls(home=settings.path("cluster_home"), jvm_dir=settings.path("jvm") / "broker",
                   ports=list(c["kafka_ports"]), controller_ports=list(c["controller_ports"]),
                   host=settings["kafka"]["host"], heap=c["broker_heap"])

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self) -> list[int]:
        """Start every node that is not up (all first: no node answers before a majority runs)."""
        launched = {}
        for node in self.nodes:
            if node.preflight() is None:
                launched[node.node_id] = node.launch()
        pids = []
        for node in self.nodes:
            pids.append(node.wait_ready(launched[node.node_id]) if node.node_id in launched else node.pid())
        self.wait_brokers(len(self.nodes))
        return pids

    def wait_brokers(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until the cluster's metadata lists ``count`` live brokers."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                try:
                    seen = len(admin.describe_cluster()["brokers"])
                finally:
                    admin.close()
                if seen >= count:
                    return
            except (KafkaError, OSError):
                pass
            time.sleep(0.5)
        raise PipelineError(f"the Kafka cluster at {self.bootstrap} lists {seen} of {count} brokers "
                            f"after {timeout_s:.0f}s: see {self.home}/kafka-*/logs/server.log")

    def stop(self) -> int:
        """Stop every node (by pid), all at once. Returns how many were running.

        One after the other, the last node left waited for a quorum that was gone: 30 s, then
        SIGKILL. With SIGTERM sent to every node first they all exit in a few seconds."""
        running = [pid for pid in (node.pid() for node in self.nodes) if pid is not None]
        for pid in running:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for node in self.nodes:
            node.stop()  # waits for the node's exit (SIGKILL after 30 s), removes its pid file
        return len(running)

    def status(self) -> list[tuple[str, int | None, bool]]:
        return [(n.bootstrap, n.pid(), n.pid() is not None and broker_ready(n.bootstrap, 2.0))
                for n in self.nodes]


# -- Spark standalone -------------------------------------------------------------------------
def spark_home() -> Path:
    """The pip-installed pyspark: its ``bin/spark-class`` and ``jars/`` are a full Spark."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class SparkStandalone:
    """A Spark standalone master on ``host:port`` and ``workers`` workers, as local processes."""

    home: Path
    port: int
    webui_port: int
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "2g"
    host: str = "127.0.0.1"
    daemon_memory: str = "256m"
    startup_timeout_s: float = 90.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "SparkStandalone":
        c = settings["cluster"]
        return cls(home=settings.path("cluster_home") / "spark", port=c["spark_master_port"],
                   webui_port=c["spark_webui_port"], workers=c["workers"],
                   worker_cores=c["worker_cores"], worker_memory=c["worker_memory"],
                   host=settings["kafka"]["host"])

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    def _props(self, role: str) -> Path:
        """A properties file per process: its path in the command line marks the process as ours."""
        path = self.home / f"{role}.conf"
        path.write_text(f"# generated by website_activity.devtools.cluster ({role})\n"
                        f"spark.ui.reverseProxy false\n")
        return path

    def _env(self) -> dict[str, str]:
        import sys

        java = java_executable()
        env = dict(os.environ)
        env.update({
            "SPARK_HOME": str(spark_home()),
            "JAVA_HOME": str(Path(java).resolve().parent.parent),
            "SPARK_LOCAL_IP": self.host,
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            "SPARK_LOG_DIR": str(self.home / "logs"),
            "SPARK_WORKER_DIR": str(self.home / "work"),
            # Executors that need Python (none of the pipeline's stages do today) use this venv's.
            "PYSPARK_PYTHON": sys.executable,
        })
        return env

    def _pid_file(self, role: str) -> Path:
        return self.home / f"{role}.pid"

    def pid(self, role: str) -> int | None:
        try:
            pid = int(self._pid_file(role).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if str(self.home / f"{role}.conf").encode() in cmdline and not is_zombie(pid):
            return pid
        return None

    def roles(self) -> list[str]:
        return ["master"] + [f"worker-{i + 1}" for i in range(self.workers)]

    def _launch(self, role: str, main: str, *args: str) -> subprocess.Popen:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        cmd = [str(spark_home() / "bin" / "spark-class"), main, *args,
               "--properties-file", str(self._props(role))]
        with open(self.home / "logs" / f"{role}.log", "ab") as out:
            # spark-class execs the JVM: the pid we keep is the JVM's own.
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self._env(), start_new_session=True)
        self._pid_file(role).write_text(str(proc.pid))
        return proc

    def alive_workers(self) -> int | None:
        """The master's count of alive workers (from its web UI's JSON), None if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.webui_port}/json/", timeout=2) as r:
                return int(json.load(r).get("aliveworkers", 0))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def start(self) -> None:
        """Start the master and the workers that are not running; wait until all workers registered.

        Raises:
            PipelineError: A port is taken, a process exits, or the workers do not register in time.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        procs = {}
        if self.pid("master") is None:
            for port, key in ((self.port, "cluster.spark_master_port"),
                              (self.webui_port, "cluster.spark_webui_port")):
                if port_in_use(self.host, port):
                    raise PipelineError(f"port {port} on {self.host} is already in use: set {key} to a "
                                        f"free port (in conf/local/*.yaml)")
            procs["master"] = self._launch(
                "master", "org.apache.spark.deploy.master.Master", "--host", self.host,
                "--port", str(self.port), "--webui-port", str(self.webui_port))
        deadline = time.monotonic() + self.startup_timeout_s
        while self.alive_workers() is None:
            self._check_alive(procs, deadline)
            time.sleep(0.5)
        for role in self.roles()[1:]:
            if self.pid(role) is None:
                procs[role] = self._launch(
                    role, "org.apache.spark.deploy.worker.Worker", self.master_url,
                    "--host", self.host, "--cores", str(self.worker_cores),
                    "--memory", self.worker_memory, "--webui-port", "0",
                    "--work-dir", str(self.home / "work" / role))
        while (self.alive_workers() or 0) < self.workers:
            self._check_alive(procs, deadline)
            time.sleep(0.5)
        log.info("Spark standalone up at %s with %d workers", self.master_url, self.workers)

    def _check_alive(self, procs: dict[str, subprocess.Popen], deadline: float) -> None:
        for role, proc in procs.items():
            if proc.poll() is not None:
                self._pid_file(role).unlink(missing_ok=True)
                raise PipelineError(f"Spark {role} exited with code {proc.returncode} during startup: "
                                    f"see {self.home / 'logs' / (role + '.log')}")
        if time.monotonic() > deadline:
            raise PipelineError(f"Spark standalone at {self.master_url} did not have {self.workers} "
                                f"workers within {self.startup_timeout_s:.0f}s: see {self.home / 'logs'}")

    def stop(self, timeout_s: float = 30.0) -> int:
        """Stop the workers, then the master (by pid). Returns how many were running."""
        stopped = 0
        for role in reversed(self.roles()):
            pid = self.pid(role)
            self._pid_file(role).unlink(missing_ok=True)
            if pid is None:
                continue
            stopped += 1
            EmbeddedBroker._terminate(pid, timeout_s)
        return stopped

