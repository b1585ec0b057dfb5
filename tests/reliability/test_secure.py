"""The `secure` profile: the embedded broker with only a SASL_SSL client listener (TLS from a CA
made by keytool, SCRAM-SHA-512 users made at format time). The stages run as `make` runs them
(scripts in subprocesses, the password in the environment); their output is kept and searched."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.reliability.test_exposure import listening
from tests.reliability.test_operator_input import isolated_env, one_error
from website_activity.core.config import load_config
from website_activity.devtools.broker import EmbeddedBroker, broker_ready, free_port
from website_activity.stages.train.train import config_hash

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]
USER = "pipeline"
SECRET = f"pw-{uuid.uuid4().hex}"  # unique: any file or log line holding it is a leak
EVENTS = 6000  # enough sessions for train's three splits to hold purchases


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory, settings):
    home = tmp_path_factory.mktemp("secure-broker")
    b = EmbeddedBroker(home=home, jvm_dir=settings.path("jvm") / "broker", port=free_port(),
                       controller_port=free_port(), heap="384m",
                       security={"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                 "username": USER, "password": SECRET})
    b.start()
    yield b
    b.stop()
    assert b.pid() is None


def secure_env(broker: EmbeddedBroker, out: Path, password: str = SECRET, **extra: str) -> dict[str, str]:
    tag = out.name[-20:].replace("_", "-").strip("-") or "t"
    return isolated_env(out, WA__KAFKA__PORT=str(broker.port), WA__KAFKA__CONTROLLER_PORT=str(broker.controller_port),
                        WA__KAFKA__SECURITY__PROTOCOL="SASL_SSL", WA__KAFKA__SECURITY__USERNAME=USER,
                        WA__KAFKA__SECURITY__PASSWORD=password,
                        WA__KAFKA__SECURITY__CA_FILE=str(broker.tls_dir / "ca.pem"),
                        WA__TOPICS__NAMES=f"[sa-{tag}, sb-{tag}]", **extra)


def stage(script: str, *args: str, env: dict[str, str], log: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    with log.open("a") as f:  # everything a user would see, kept for the secret search
        f.write(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def files_holding(secret: str, *roots: Path) -> list[Path]:
    needle = secret.encode()
    return [p for root in roots for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_whole_chain_works_over_sasl_ssl_and_the_secret_never_leaks(secure_broker, tmp_path) -> None:
    out = tmp_path / "out"
    env, log = secure_env(secure_broker, out), tmp_path / "stages.log"
    stage("topics.py", env=env, log=log)
    stage("produce.py", "--events", str(EVENTS), "--seed", "3", env=env, log=log)
    stage("ingest.py", env=env, log=log)
    produced = json.loads((out / "runs" / "produce.json").read_text())
    ingested = json.loads((out / "runs" / "ingest.json").read_text())
    assert produced["failed"] == 0 and produced["sent"] == produced["records"] > 1000
    # every record sent over SASL_SSL was read back by Spark over SASL_SSL, and reconciled
    assert ingested["records_read"] == produced["records"] and ingested["reconciled"]
    assert ingested["silver"] == EVENTS  # duplicates removed, malformed records quarantined
    # the broker saw our user log in (and kept no plaintext listener)
    assert f"Authenticated as {USER}" not in log.read_text()  # kafka-python's INFO lines stay quiet
    assert {p for _, p in listening([secure_broker.pid()])} == {secure_broker.port, secure_broker.controller_port}
    # The stages after ingest do not talk to Kafka, but they record the configuration and the run
    # manifests (MLflow params and tags, reports): they run with the same environment, and are searched too.
    stage("validate.py", env=env, log=log)
    stage("train.py", env=env, log=log)
    stage("report.py", env=env, log=log)
    assert (out / "mlflow.db").is_file() and any((out / "mlruns").rglob("MLmodel"))
    assert (out / "reports" / "index.html").is_file() and (out / "reports" / "model_metrics.csv").is_file()
    # no copy of the password anywhere: stage output, lake, manifests, checkpoints, MLflow's store and
    # artifacts, reports, broker logs and data
    assert files_holding(SECRET, tmp_path, secure_broker.home) == []


@pytest.mark.parametrize("script", ["topics.py", "produce.py", "ingest.py"])
def test_a_wrong_password_fails_in_one_line(script, secure_broker, tmp_path) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = secure_env(secure_broker, tmp_path, password=wrong, WA__KAFKA__REQUEST_TIMEOUT_S="5")
    args = ("--events", "10") if script == "produce.py" else ()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    line = one_error(proc, script.removesuffix(".py"))
    assert (f"the Kafka broker at 127.0.0.1:{secure_broker.port} refused the login of user '{USER}' "
            "(SCRAM-SHA-512): check kafka.security.username and kafka.security.password") in line
    assert wrong not in proc.stdout + proc.stderr


@pytest.mark.parametrize("client", ["plaintext", "TLS without a login", "login without TLS"])
def test_a_client_without_tls_or_login_is_refused(client, secure_broker) -> None:
    ca = str(secure_broker.tls_dir / "ca.pem")
    config = {"plaintext": {},
              "TLS without a login": {"security_protocol": "SSL", "ssl_cafile": ca},
              "login without TLS": {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                    "sasl_plain_username": USER, "sasl_plain_password": SECRET}}[client]
    assert broker_ready(secure_broker.bootstrap, 3.0, **secure_broker.client_config())  # the control
    assert not broker_ready(secure_broker.bootstrap, 3.0, **config)


def test_the_password_is_masked_in_the_config_and_its_hash(tmp_path) -> None:
    # what MLflow records of the configuration (params config_hash) and what may be shown
    a = make_settings(tmp_path, kafka__security__password=SECRET)
    b = make_settings(tmp_path, kafka__security__password="another")
    assert SECRET not in json.dumps(a.public()) and a["kafka"]["security"]["password"] == SECRET
    assert config_hash(a) == config_hash(b)


def test_the_secure_profile_needs_a_password_and_takes_it_as_typed(tmp_path) -> None:
    env = {"WA__KAFKA__SECURITY__PASSWORD": "0123"}  # a YAML integer, kept as the text typed
    assert load_config("secure", environ=env)["kafka"]["security"]["password"] == "0123"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "topics.py"), "--profile", "secure"], cwd=ROOT,
                          env=isolated_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert "kafka.security.password is empty: set it in conf/local/*.yaml or " \
           "WA__KAFKA__SECURITY__PASSWORD" in one_error(proc, "topics")
