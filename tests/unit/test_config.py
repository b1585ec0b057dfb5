"""The configuration loader: layers in order, unknown keys and wrong types rejected by name."""

from pathlib import Path

import pytest

from website_activity.core.config import load_config
from website_activity.core.errors import ConfigError

BASE = """
kafka:
  host: 127.0.0.1
  port: 9092
  controller_port: 9093
  mode: embedded
  bootstrap_servers: ""
  request_timeout_s: 15
topics:
  names: [a, b]
  replication_factor: 1
  min_insync_replicas: 1
schema:
  enums: {}
train:
  test_fraction: 0.25
  reg_param: 0.01
run:
  events: 100
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "conf" / "profiles").mkdir(parents=True)
    (tmp_path / "conf" / "base.yaml").write_text(BASE)
    (tmp_path / "conf" / "profiles" / "local.yaml").write_text("kafka:\n  port: 9100\n")
    (tmp_path / "conf" / "profiles" / "other.yaml").write_text("kafka:\n  port: 9200\n")
    return tmp_path


def test_layers_apply_in_order(root: Path) -> None:
    (root / "conf" / "local").mkdir()
    (root / "conf" / "local" / "10-me.yaml").write_text("kafka:\n  port: 9300\nrun:\n  events: 5\n")
    assert load_config(root=root, environ={})["kafka"]["port"] == 9300
    env = {"WA__KAFKA__PORT": "9400"}
    assert load_config(root=root, environ=env)["kafka"]["port"] == 9400
    # the command line wins over everything; None means "not given"
    s = load_config(root=root, environ=env, overrides={"kafka.port": 9500, "run.events": None})
    assert (s["kafka"]["port"], s["run"]["events"]) == (9500, 5)


def test_profile_from_argument_or_environment(root: Path) -> None:
    assert load_config("other", root=root, environ={})["kafka"]["port"] == 9200
    s = load_config(root=root, environ={"PROFILE": "other"})
    assert (s["profile"], s["kafka"]["port"]) == ("other", 9200)


def test_unknown_profile_names_the_known_ones(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'nope' \(known: local, other\)"):
        load_config("nope", root=root, environ={})


def test_unknown_key_names_key_and_file(root: Path) -> None:
    (root / "conf" / "profiles" / "local.yaml").write_text("kafka:\n  prot: 9100\n")
    with pytest.raises(ConfigError, match=r"local\.yaml: unknown key 'kafka\.prot'"):
        load_config(root=root, environ={})


def test_unknown_environment_key_is_rejected(root: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable WA__KAFKA__PROT: unknown key 'kafka.prot'"):
        load_config(root=root, environ={"WA__KAFKA__PROT": "1"})


def test_wrong_type_names_key_and_types(root: Path) -> None:
    (root / "conf" / "profiles" / "local.yaml").write_text("kafka:\n  port: nine\n")
    with pytest.raises(ConfigError, match=r"'kafka\.port' must be an integer, got string 'nine'"):
        load_config(root=root, environ={})
    (root / "conf" / "profiles" / "local.yaml").write_text("")
    with pytest.raises(ConfigError, match="'run.events' must be an integer"):
        load_config(root=root, environ={}, overrides={"run.events": True})


def test_int_accepted_where_a_float_is_declared(root: Path) -> None:
    s = load_config(root=root, environ={}, overrides={"train.reg_param": 1})
    assert s["train"]["reg_param"] == 1.0 and isinstance(s["train"]["reg_param"], float)


def test_malformed_yaml_names_file_and_line(root: Path) -> None:
    (root / "conf" / "profiles" / "local.yaml").write_text("kafka:\n  port: [9100\n")
    with pytest.raises(ConfigError, match=r"local\.yaml: not valid YAML \(line \d+\)"):
        load_config(root=root, environ={})


def test_semantic_checks(root: Path) -> None:
    with pytest.raises(ConfigError, match="kafka.port and kafka.controller_port must differ"):
        load_config(root=root, environ={}, overrides={"kafka.port": 9093})
    with pytest.raises(ConfigError, match="kafka.mode must be"):
        load_config(root=root, environ={}, overrides={"kafka.mode": "cloud"})


def test_paths_and_tracking_uri_are_anchored_at_the_root() -> None:
    s = load_config("local", environ={})
    assert s.path("silver") == s.root / "data" / "silver"
    assert s.tracking_uri == f"sqlite:///{s.root / 'mlflow.db'}"
    assert s.bootstrap_servers == "127.0.0.1:9092"


def test_repository_config_loads_for_every_profile() -> None:
    # each shipped profile is valid against base.yaml
    for profile in ("local", "compose"):
        assert load_config(profile, environ={})["profile"] == profile


def test_validation_rules_are_checked_against_the_schema() -> None:
    # the generator draws clicks inside these viewports: a device without one cannot be generated
    with pytest.raises(ConfigError, match="validation.viewports: no viewport for device_type tablet"):
        load_config("local", environ={}, overrides={
            "validation.viewports": {"desktop": [1920, 1080], "mobile": [390, 844]}})
    with pytest.raises(ConfigError, match=r"validation.viewports.mobile must be \[width, height\]"):
        load_config("local", environ={}, overrides={
            "validation.viewports": {"desktop": [1920, 1080], "tablet": [820, 1180], "mobile": [390]}})
    with pytest.raises(ConfigError, match="validation.device_share: smartwatch is not in schema.enums.device_type"):
        load_config("local", environ={}, overrides={"validation.device_share": {"smartwatch": [0.0, 0.1]}})
    with pytest.raises(ConfigError, match=r"validation.device_share.tablet must be \[min, max\]"):
        load_config("local", environ={}, overrides={"validation.device_share": {"tablet": [0.5, 0.2]}})
    with pytest.raises(ConfigError, match="validation.max_quarantine_rate must be between 0 and 1"):
        load_config("local", environ={}, overrides={"validation.max_quarantine_rate": 1.5})


def test_min_insync_replicas_cannot_exceed_the_replication_factor(root: Path) -> None:
    (root / "conf" / "profiles" / "other.yaml").write_text("topics:\n  min_insync_replicas: 2\n")
    with pytest.raises(ConfigError, match=r"topics\.min_insync_replicas must be between 1 and topics\.replication_factor \(1\), got 2"):
        load_config("other", root=root, environ={})
