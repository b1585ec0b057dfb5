"""Configuration: one merged, type-checked view of ``conf/``.

Layers, lowest precedence first:

1. ``conf/base.yaml`` declares every key and, by its value, the key's type.
2. ``conf/profiles/<profile>.yaml`` (profile from ``--profile``, ``PROFILE`` or ``local``).
3. ``conf/local/*.yaml`` in name order (untracked: overrides and secrets).
4. Environment variables ``WA__SECTION__KEY=value`` (values parsed as YAML scalars).
5. Command-line overrides, given as ``{"section.key": value}``.

A key that base does not declare, or a value of another type, is rejected with a
:class:`ConfigError` naming the key and where it came from. Nothing happens at import.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from website_activity.core.errors import ConfigError
from website_activity.core.schema import EVENT_FIELDS, event_fields

ENV_PREFIX = "WA__"
# Keys whose values are secrets: never shown, logged or hashed (see Settings.public).
SECRET_KEYS = ("kafka.security.password",)
MASK = "***"


def repo_root() -> Path:
    """The project folder: ``$WA_ROOT`` (the Makefile sets it), else the current folder if it holds
    ``conf/base.yaml``, else the checkout this package was installed from (editable install)."""
    if os.environ.get("WA_ROOT"):
        return Path(os.environ["WA_ROOT"]).resolve()
    cwd = Path.cwd()
    if (cwd / "conf" / "base.yaml").exists():
        return cwd.resolve()
    return Path(__file__).resolve().parents[3]  # src/website_activity/core/config.py


def conf_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / "conf"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _type_ok(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool):
        return isinstance(value, bool)
    if isinstance(expected, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(expected, str):
        return isinstance(value, str)
    if isinstance(expected, list):
        return isinstance(value, list)
    if isinstance(expected, dict):
        return isinstance(value, dict)
    return expected is None or value is None or type(expected) is type(value)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _merge(base: dict[str, Any], layer: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Merge ``layer`` into ``base`` in place, checking keys and types against ``base``."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{dotted}'")
        current = base[key]
        if isinstance(value, _EnvScalar):  # a string key keeps the text as typed ("0123", "yes")
            value = value.raw if isinstance(current, str) else value.parsed
        if isinstance(current, dict) and current and not _is_free_mapping(dotted):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping, got {_type_name(value)}")
            _merge(current, value, source, dotted + ".")
            continue
        if not _type_ok(current, value):
            raise ConfigError(
                f"{source}: '{dotted}' must be {_a(_type_name(current))}, got {_type_name(value)} {value!r}"
            )
        if isinstance(current, float) and isinstance(value, int):
            value = float(value)
        base[key] = copy.deepcopy(value)


# Mappings whose keys are data (enum or device names), replaced whole rather than checked key by key.
_FREE_MAPPINGS = {"schema.enums", "validation.viewports", "validation.device_share", "spark.conf"}


def _is_free_mapping(dotted: str) -> bool:
    return dotted in _FREE_MAPPINGS


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


@dataclass(frozen=True)
class _EnvScalar:
    """An environment variable's value: its text, and the text read as a YAML scalar."""

    raw: str
    parsed: Any


def _env_layers(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    layers = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
        raw = environ[name]
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if not isinstance(value, (dict, list)):
            value = _EnvScalar(raw, value)
        layers.append((f"environment variable {name}", _nest(dotted, value)))
    return layers


def profiles(root: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (conf_dir(root) / "profiles").glob("*.yaml"))


@dataclass(frozen=True)
class Settings:
    """The merged configuration, with paths resolved against the repository root."""

    data: dict[str, Any]
    root: Path

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    def path(self, key: str) -> Path:
        """An absolute path for ``paths.<key>``."""
        p = Path(self.data["paths"][key])
        return p if p.is_absolute() else self.root / p

    def public(self) -> dict[str, Any]:
        """The configuration with every secret (:data:`SECRET_KEYS`) masked: what may be shown,
        logged, hashed or recorded."""
        data = copy.deepcopy(self.data)
        for dotted in SECRET_KEYS:
            *parents, last = dotted.split(".")
            node = data
            for part in parents:
                node = node[part]
            if node.get(last):
                node[last] = MASK
        return data

    @property
    def bootstrap_servers(self) -> str:
        k = self.data["kafka"]
        return k["bootstrap_servers"] or f"{k['host']}:{k['port']}"

    @property
    def tracking_uri(self) -> str:
        """``mlflow.tracking_uri`` with a relative sqlite path anchored at the project folder."""
        uri = self.data["mlflow"]["tracking_uri"]
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
            return prefix + str(self.root / uri[len(prefix):])
        return uri

    @property
    def artifact_root(self) -> Path:
        """``mlflow.artifact_root`` anchored at the project folder."""
        p = Path(self.data["mlflow"]["artifact_root"])
        return p if p.is_absolute() else self.root / p

    @property
    def topics(self) -> list[str]:
        return list(self.data["topics"]["names"])

    @property
    def schema_fields(self) -> list[dict[str, Any]]:
        """The event's fields (:mod:`website_activity.core.schema`: declared there, not in the config)."""
        return event_fields()


def load_config(
    profile: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load and merge the configuration layers.

    Args:
        profile: Profile name; defaults to ``$PROFILE`` or ``local``.
        overrides: Command-line values as ``{"section.key": value}``; ``None`` values are skipped.
        root: Repository root holding ``conf/`` (tests pass a temp folder).
        environ: Environment mapping (defaults to ``os.environ``).

    Returns:
        The merged :class:`Settings`.

    Raises:
        ConfigError: A file is missing or malformed, the profile is unknown, or a key or type is wrong.
    """
    root = (root or repo_root()).resolve()
    environ = os.environ if environ is None else environ
    cdir = conf_dir(root)
    base_file = cdir / "base.yaml"
    if not base_file.exists():
        raise ConfigError(f"{base_file}: missing (the base configuration declares every key)")
    data = _read_yaml(base_file)

    profile = profile or environ.get("PROFILE") or "local"
    profile_file = cdir / "profiles" / f"{profile}.yaml"
    if not profile_file.exists():
        raise ConfigError(f"unknown profile '{profile}' (known: {', '.join(profiles(root)) or 'none'})")
    layers: list[tuple[str, Mapping[str, Any]]] = [(str(profile_file), _read_yaml(profile_file))]
    local_dir = cdir / "local"
    if local_dir.is_dir():
        layers += [(str(p), _read_yaml(p)) for p in sorted(local_dir.glob("*.yaml"))]
    layers += _env_layers(environ)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            layers.append((f"command-line option for '{dotted}'", _nest(dotted, value)))

    for source, layer in layers:
        _merge(data, layer, source)
    data["profile"] = profile
    _check_semantics(data)
    return Settings(data=data, root=root)


def _check_semantics(data: dict[str, Any]) -> None:
    if data["kafka"]["mode"] not in ("embedded", "external"):
        raise ConfigError(f"kafka.mode must be 'embedded' or 'external', got {data['kafka']['mode']!r}")
    for key in ("port", "controller_port"):
        port = data["kafka"][key]
        if not 0 < port < 65536:
            raise ConfigError(f"kafka.{key} must be a TCP port (1-65535), got {port}")
    if data["kafka"]["port"] == data["kafka"]["controller_port"]:
        raise ConfigError("kafka.port and kafka.controller_port must differ")
    sec = data["kafka"].get("security") or {"protocol": "PLAINTEXT"}
    if sec["protocol"] not in ("PLAINTEXT", "SASL_SSL"):
        raise ConfigError(f"kafka.security.protocol must be PLAINTEXT or SASL_SSL, got {sec['protocol']!r}")
    if sec["protocol"] == "SASL_SSL":
        if sec["sasl_mechanism"] not in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
            raise ConfigError(f"kafka.security.sasl_mechanism must be SCRAM-SHA-512 or SCRAM-SHA-256, "
                              f"got {sec['sasl_mechanism']!r}")
    if data["run"]["events"] < 0:
        raise ConfigError(f"run.events must be >= 0, got {data['run']['events']}")
    if not data["topics"]["names"]:
        raise ConfigError("topics.names must name at least one topic")
    t = data["topics"]
    if not 1 <= t["min_insync_replicas"] <= t["replication_factor"]:
        raise ConfigError(f"topics.min_insync_replicas must be between 1 and topics.replication_factor "
                          f"({t['replication_factor']}), got {t['min_insync_replicas']}")
    for enum in data["schema"]["enums"]:
        if enum not in EVENT_FIELDS:
            raise ConfigError(f"schema.enums: '{enum}' is not a field of the event schema")
    if not 0.0 < data["train"]["test_fraction"] < 1.0:
        raise ConfigError("train.test_fraction must be between 0 and 1")
    if "report" in data and data["report"]["ip_mode"] not in ("truncate", "hash"):
        raise ConfigError(f"report.ip_mode must be 'truncate' or 'hash', got {data['report']['ip_mode']!r}")
    if "validation" in data:
        _check_validation(data["validation"], data["schema"]["enums"].get("device_type"))


def require_credentials(security: dict[str, Any]) -> None:
    """A SASL_SSL client (or the broker that creates its user) needs a username and a password;
    stopping a broker or reading its status does not, so this is checked where they are used.

    Raises:
        ConfigError: One of them is empty.
    """
    if security["protocol"] == "SASL_SSL" and not (security["username"] and security["password"]):
        missing = "username" if not security["username"] else "password"
        raise ConfigError(f"kafka.security.protocol is SASL_SSL but kafka.security.{missing} is empty: "
                          f"set it in conf/local/*.yaml or WA__KAFKA__SECURITY__{missing.upper()}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_validation(conf: dict[str, Any], devices: list[str] | None) -> None:
    viewports, shares = conf["viewports"], conf["device_share"]
    for device, size in viewports.items():
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ConfigError(f"validation.viewports.{device} must be [width, height] in pixels, got {size!r}")
    for device, bounds in shares.items():
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)
                and 0 <= bounds[0] <= bounds[1] <= 1):
            raise ConfigError(f"validation.device_share.{device} must be [min, max] with "
                              f"0 <= min <= max <= 1, got {bounds!r}")
    if devices is not None:
        # The generator draws clicks inside these viewports: every device needs one.
        missing = [d for d in devices if d not in viewports]
        if missing:
            raise ConfigError(f"validation.viewports: no viewport for device_type {', '.join(missing)}")
        for key, mapping in (("viewports", viewports), ("device_share", shares)):
            unknown = [d for d in mapping if d not in devices]
            if unknown:
                raise ConfigError(f"validation.{key}: {', '.join(unknown)} is not in schema.enums.device_type")
    if not 0.0 <= conf["max_quarantine_rate"] <= 1.0:
        raise ConfigError("validation.max_quarantine_rate must be between 0 and 1")
    for key in ("event_time_margin_h", "clock_skew_s"):
        if conf[key] < 0:
            raise ConfigError(f"validation.{key} must be >= 0, got {conf[key]}")
