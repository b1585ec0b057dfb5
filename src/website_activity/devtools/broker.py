"""An embedded Apache Kafka 4.x broker in KRaft mode, run as a local process from ``.jvm/broker``.

One combined broker+controller node bound to loopback. Its storage is formatted once
(``kafka.tools.StorageTool format --standalone``); it logs to ``<home>/logs/server.log`` and
writes its pid to ``<home>/broker.pid``. It is stopped by that pid and only by it.

The same class runs one node of a multi-node cluster (:mod:`website_activity.devtools.cluster`): given
``voters`` (a static controller quorum) and a shared ``cluster_id``, each node formats its own
storage with that id, and internal topics are replicated ``replication`` times.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from website_activity.adapters.jvm import jars, java_executable
from website_activity.adapters.kafka_security import kafka_python_config, scram_jaas
from website_activity.core.config import Settings, require_credentials
from website_activity.core.errors import PipelineError

log = logging.getLogger(__name__)

BROKER_USER = "kafka-broker"  # the embedded broker's own SCRAM user (inter-broker login)

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
"""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def new_cluster_id() -> str:
    while True:  # Kafka's own ids never start with '-', which a command line would take for an option
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def broker_ready(bootstrap: str, timeout_s: float = 5.0, **client: object) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request (``client``: kafka-python
    security settings, e.g. :meth:`EmbeddedBroker.client_config`)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                 bootstrap_timeout_ms=int(timeout_s * 1000), **client)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


@dataclass
class EmbeddedBroker:
    """A single-node KRaft broker on ``host:port`` (controller on ``controller_port``)."""

    home: Path
    jvm_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    startup_timeout_s: float = 60.0
    # One node of a cluster: its id, the static quorum ``((node_id, controller_port), ...)`` on
    # ``host``, the cluster's id, and the replication of internal topics. Empty: a lone node.
    node_id: int = 1
    voters: tuple[tuple[int, int], ...] = ()
    cluster_id: str = ""
    replication: int = 1
    # How error messages name this node's ports and the command that stops it.
    port_keys: tuple[str, str] = ("kafka.port", "kafka.controller_port")
    down_command: str = "make kafka-down"
    # ``kafka.security``: PLAINTEXT, or SASL_SSL (TLS from <home>/tls, SCRAM users made at format).
    security: dict | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "EmbeddedBroker":
        k = settings["kafka"]
        return cls(home=settings.path("kafka_home"), jvm_dir=settings.path("jvm") / "broker",
                   host=k["host"], port=k["port"], controller_port=k["controller_port"],
                   heap=k["heap"], startup_timeout_s=float(k["startup_timeout_s"]),
                   security=dict(k["security"]))

    @property
    def secure(self) -> bool:
        return bool(self.security) and self.security["protocol"] == "SASL_SSL"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    def client_config(self) -> dict:
        """kafka-python settings to reach this broker as the configured user (empty for PLAINTEXT)."""
        if not self.secure:
            return {}
        return kafka_python_config(self.security, self.tls_dir / "ca.pem")

    # -- files ------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "server.log"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    def _listener_lines(self) -> list[str]:
        h, p, c = self.host, self.port, self.controller_port
        if not self.secure:
            return [f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                    f"advertised.listeners=PLAINTEXT://{h}:{p}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"]
        # One client listener, SASL_SSL: no plaintext port at all. The KRaft controller listener
        # stays PLAINTEXT on loopback (controllers cannot log in with SCRAM: its users live in the
        # metadata they serve). The broker logs in to itself as its own user, BROKER_USER.
        mech = self.security["sasl_mechanism"]
        store, password = self.tls_dir / "broker.p12", self._store_password()
        return [f"listeners=SASL_SSL://{h}:{p},CONTROLLER://{h}:{c}",
                f"advertised.listeners=SASL_SSL://{h}:{p}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=SASL_SSL",
                "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
                f"sasl.enabled.mechanisms={mech}",
                f"sasl.mechanism.inter.broker.protocol={mech}",
                f"listener.name.sasl_ssl.{mech.lower()}.sasl.jaas.config="
                f"{scram_jaas(BROKER_USER, self._broker_password())}",
                f"ssl.keystore.location={store}", "ssl.keystore.type=PKCS12",
                f"ssl.keystore.password={password}", f"ssl.key.password={password}",
                f"ssl.truststore.location={self.tls_dir / 'ca.pem'}", "ssl.truststore.type=PEM",
                "ssl.client.auth=none", "ssl.endpoint.identification.algorithm=https",
                # a refused login is answered at once: with Kafka's delayed close (100 ms) the
                # refusal reaches kafka-python only now and then, and users get "no broker" instead
                # of "wrong password". The listener is on loopback: guessing is local anyway.
                "connection.failed.authentication.delay.ms=0"]

    def _store_password(self) -> str:
        from website_activity.devtools.tls import store_password

        return store_password(self.tls_dir)

    def _broker_password(self) -> str:
        """The broker's own SCRAM password: random, made once, kept in <home>/tls (mode 0600)."""
        path = self.tls_dir / "broker-user.pass"
        if not path.exists():
            import secrets

            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def _scram_args(self) -> list[str]:
        """``--add-scram`` arguments of the storage format: the broker's user and the pipeline's."""
        if not self.secure:
            return []
        require_credentials(self.security)
        mech, s = self.security["sasl_mechanism"], self.security
        users = [(BROKER_USER, self._broker_password()), (s["username"], s["password"])]
        out = []
        for name, password in users:
            if '"' in name + password:
                raise PipelineError("kafka.security.username and password must not contain a double quote")
            out += ["--add-scram", f'{mech}=[name="{name}",password="{password}"]']
        return out

    def _credentials_digest(self) -> str:
        """A digest that changes with the users (the storage is re-formatted then); not the password."""
        if not self.secure:
            return ""
        import hashlib

        s = self.security
        text = "\0".join([s["sasl_mechanism"], s["username"], s["password"], self._broker_password()])
        return hashlib.sha256(text.encode()).hexdigest()

    def properties(self) -> str:
        h, c = self.host, self.controller_port
        rf, min_isr = self.replication, min(2, self.replication)
        quorum = (f"controller.quorum.voters={','.join(f'{n}@{h}:{cp}' for n, cp in self.voters)}"
                  if self.voters else f"controller.quorum.bootstrap.servers={h}:{c}")
        return "\n".join([
            "# generated by website_activity.devtools.broker: edit conf/ instead",
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            quorum,
            *self._listener_lines(),
            f"log.dirs={self.home / 'data'}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "delete.topic.enable=true",
            f"default.replication.factor={rf}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            "",
        ])

    # -- process ------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of the running broker started from this home, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # A recycled pid belongs to some other program: only ours names our properties file.
        if b"kafka.Kafka" in cmdline and str(self.properties_file).encode() in cmdline:
            return pid
        return None

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        classpath = ":".join(str(j) for j in jars(self.jvm_dir, "Kafka broker"))
        return [
            java_executable(), f"-Xmx{self.heap}", f"-Xms{self.heap}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", classpath, main, *args,
        ]

    def _prepare(self) -> None:
        """Write the configuration; format the storage once (again if the ports changed)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2)
        if self.secure:
            from website_activity.devtools.tls import ensure_tls

            ensure_tls(self.tls_dir)
        props = self.properties()
        stamp = self.home / "format.json"
        wanted = {"host": self.host, "port": self.port, "controller_port": self.controller_port,
                  "node_id": self.node_id, "voters": [list(v) for v in self.voters],
                  "cluster_id": self.cluster_id}
        if self.secure:
            wanted["credentials"] = self._credentials_digest()
        formatted = (self.home / "data" / "meta.properties").exists()
        if formatted and stamp.exists() and json.loads(stamp.read_text()) == wanted:
            self._write_properties(props)
            return
        # The KRaft voter set records the controller's endpoint: a new port needs new storage.
        # The embedded broker's data is disposable (make all recreates the topics).
        if (self.home / "data").exists():
            log.warning("embedded broker settings changed: re-formatting %s", self.home / "data")
            import shutil
            shutil.rmtree(self.home / "data")
        self._write_properties(props)
        # A lone node formats itself as a one-voter quorum; a cluster node joins the static quorum
        # of ``voters`` under the id every node of the cluster shares.
        mode = [] if self.voters else ["--standalone"]
        out = subprocess.run(
            self._java_cmd("kafka.tools.StorageTool", "format", *mode,
                           "-t", self.cluster_id or new_cluster_id(), "-c", str(self.properties_file),
                           *self._scram_args()),
            capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PipelineError(f"formatting the broker storage failed: {last[0][:300]}")
        stamp.write_text(json.dumps(wanted))

    def _write_properties(self, props: str) -> None:
        """server.properties holds the keystore's and the broker user's passwords: owner only."""
        self.properties_file.touch(mode=0o600)
        os.chmod(self.properties_file, 0o600)
        self.properties_file.write_text(props)

    def start(self) -> int:
        """Start the broker and wait until it answers a metadata request.

        Returns:
            The broker's pid.

        Raises:
            PipelineError: A port is taken, Java or the jars are missing, or the broker did not
                become ready in time (the log's tail is printed to stderr).
        """
        running = self.preflight()
        if running is not None:
            return running
        return self.wait_ready(self.launch())

    def preflight(self) -> int | None:
        """The pid if this broker already runs and answers; None if it can be launched.

        Raises:
            PipelineError: Our process runs but does not answer, or a port is taken by another.
        """
        running = self.pid()
        if running is not None:
            if broker_ready(self.bootstrap, **self.client_config()):
                log.info("broker already up at %s (pid %d)", self.bootstrap, running)
                return running
            raise PipelineError(f"a broker process (pid {running}) runs but does not answer at "
                                f"{self.bootstrap}: run '{self.down_command}' and try again")
        for port, key in ((self.port, self.port_keys[0]), (self.controller_port, self.port_keys[1])):
            if port_in_use(self.host, port):
                make_var = ", or make ... PORT=N" if key == "kafka.port" else ""
                raise PipelineError(
                    f"port {port} on {self.host} is already in use: set {key} to a free port "
                    f"(in conf/local/*.yaml, WA__{key.upper().replace('.', '__')}=...{make_var})")
        return None

    def launch(self) -> subprocess.Popen:
        """Start the broker process without waiting for it (a cluster starts all its nodes first:
        none answers before a majority of the quorum runs)."""
        self._prepare()
        with open(self.home / "logs" / "stdout.log", "ab") as out:
            proc = subprocess.Popen(self._java_cmd("kafka.Kafka", str(self.properties_file)),
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        return proc

    def wait_ready(self, proc: subprocess.Popen) -> int:
        """Wait until the launched broker answers; its pid. Raises PipelineError on timeout or exit."""
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise PipelineError(f"the broker exited with code {proc.returncode} during startup:\n"
                                    + self.log_tail())
            if broker_ready(self.bootstrap, timeout_s=2.0, **self.client_config()):
                log.info("broker up at %s (pid %d)", self.bootstrap, proc.pid)
                return proc.pid
            time.sleep(0.5)
        self._terminate(proc.pid)
        raise PipelineError(f"the broker did not answer at {self.bootstrap} within "
                            f"{self.startup_timeout_s:.0f}s (kafka.startup_timeout_s):\n" + self.log_tail())

    def kill(self) -> bool:
        """SIGKILL the broker (a crash, for fault tests); reaped, pid file kept for a restart."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            while Path(f"/proc/{pid}").exists() and not is_zombie(pid):
                time.sleep(0.05)
        return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker started from this home (by its pid). Returns False if none ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._terminate(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _terminate(pid: int, timeout_s: float = 30.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
                if done == pid:
                    return
            except ChildProcessError:  # started by another process: poll /proc
                if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
                    return
            time.sleep(0.2)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            text = []
        try:
            text += (self.home / "logs" / "stdout.log").read_text(errors="replace").splitlines()
        except OSError:
            pass
        return "\n".join(text[-lines:]) or f"(no log in {self.log_file.parent})"


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
