"""docker-compose.yml checked against the `compose` profile and the project's pins.

There is no Docker engine where the project is built, so the compose file cannot be run in CI;
this checks what would break it: service names and ports the profile relies on, image versions
equal to the pinned Kafka and pyspark, healthchecks behind every depends_on, a shared lake.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from website_activity.core.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def profile():
    return load_config("compose", root=REPO, environ={})


def pinned(package: str) -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if re.split(r"[\[=]", d)[0] == package)


def kafka_version() -> str:
    pom = (REPO / "conf" / "jvm" / "broker" / "pom.xml").read_text()
    return re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom).group(1)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_stack_has_kafka_spark_master_two_workers_mlflow_and_the_pipeline(compose) -> None:
    assert {"kafka", "spark-master", "spark-worker-1", "spark-worker-2", "mlflow", "pipeline"} <= set(compose["services"])


def test_images_are_the_pinned_versions(compose) -> None:
    services = compose["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    spark = pinned("pyspark")
    for name in ("spark-master", "spark-worker-1", "spark-worker-2"):
        assert services[name]["image"] == f"apache/spark:{spark}", name
    import pyspark
    assert pyspark.__version__ == spark  # the driver in the pipeline image is the same Spark


def test_the_profile_reaches_kafka_by_its_advertised_service_name(compose, profile) -> None:
    assert profile["kafka"]["mode"] == "external"
    kafka = env_of(compose["services"]["kafka"])
    advertised = {l.split("://", 1)[1] for l in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert set(profile.bootstrap_servers.split(",")) <= advertised
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # `make topics` creates them


def test_the_profile_uses_the_spark_master_and_the_workers_join_it(compose, profile) -> None:
    services = compose["services"]
    master = profile["spark"]["master"]
    host, port = re.fullmatch(r"spark://([\w-]+):(\d+)", master).groups()
    assert host in services
    command = services[host]["command"]
    assert "org.apache.spark.deploy.master.Master" in command and f"--port {port}" in command
    for name in ("spark-worker-1", "spark-worker-2"):
        assert "org.apache.spark.deploy.worker.Worker" in services[name]["command"]
        assert master in services[name]["command"], name
    # executors call the driver back by the pipeline's service name
    assert profile["spark"]["conf"]["spark.driver.host"] == "pipeline"


def test_executors_write_the_lake_where_the_driver_reads_it(compose, profile) -> None:
    services = compose["services"]
    data = profile["paths"]["data"]
    container_data = f"/app/{data}"  # the pipeline image's WORKDIR is /app (docker/Dockerfile)
    assert "WORKDIR /app" in (REPO / "docker" / "Dockerfile").read_text()
    for name in ("pipeline", "spark-worker-1", "spark-worker-2"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(container_data) == "./data", name


def test_mlflow_tracking_uri_names_the_mlflow_service_and_its_port(compose, profile) -> None:
    m = re.fullmatch(r"http://([\w-]+):(\d+)", profile["mlflow"]["tracking_uri"])
    assert m, profile["mlflow"]["tracking_uri"]
    host, port = m.groups()
    assert host == "mlflow" and f"--port {port}" in compose["services"]["mlflow"]["command"]
    assert profile["mlflow"]["artifact_root"].startswith("mlflow-artifacts:/")  # proxied by the server
    assert "--artifacts-destination" in compose["services"]["mlflow"]["command"]


def test_every_dependency_waits_for_a_healthcheck(compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"
    assert set(services["pipeline"]["depends_on"]) >= {"kafka", "mlflow", "spark-worker-1", "spark-worker-2"}


def test_published_ports_bind_to_loopback_only(compose) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_pipeline_image_sets_the_project_up_with_its_own_make_setup() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    assert "openjdk-17" in dockerfile and "maven" in dockerfile
    assert "RUN make setup" in dockerfile
