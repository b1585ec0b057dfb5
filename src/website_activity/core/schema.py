"""The event schema, declared once here: the generator's JSON, Spark's parse schema, ingest's
quarantine rules and the validation suite are derived from it (the configuration only gives
``schema.enums``, the allowed values)."""

from __future__ import annotations

from typing import Any

FIELD_TYPES = ("string", "timestamp", "integer")
"""The types a field may have (Spark: StringType, TimestampType, IntegerType)."""

EVENT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("event_id", "string"), ("user_id", "string"), ("page_url", "string"), ("timestamp", "timestamp"),
    ("action_type", "string"), ("browser", "string"), ("timezone", "string"), ("device_type", "string"),
    ("click_coordinates_x", "integer"), ("click_coordinates_y", "integer"), ("session_id", "string"),
    ("ip_address", "string"),
)
"""The 12 fields of the original project, in order, with their types; every one is required."""

EVENT_FIELDS = tuple(name for name, _ in EVENT_SCHEMA)
"""The fields' names, in order."""


def event_fields() -> list[dict[str, Any]]:
    """The schema as field records (``name``, ``type``, ``required``), as Spark, ingest and the
    suite read it (``Settings.schema_fields``)."""
    return [{"name": name, "type": kind, "required": True} for name, kind in EVENT_SCHEMA]


NO_COORDINATE = -1
"""``click_coordinates_x`` and ``_y`` of every action that is not a click (the generator writes it,
ingest quarantines anything else, the suite expects it)."""
UUID_REGEX = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""``event_id``, ``user_id`` and ``session_id``."""
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_REGEX = rf"^({_OCTET}\.){{3}}{_OCTET}$"
"""``ip_address``: a dotted IPv4 address, each octet 0-255 without leading zeros."""


def field_names(fields: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for f in fields]


def required_fields(fields: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for f in fields if f.get("required", False)]


def spark_type_names(fields: list[dict[str, Any]]) -> dict[str, str]:
    """Spark type names per column, as Great Expectations' type expectation wants them."""
    names = {"string": "StringType", "timestamp": "TimestampType", "integer": "IntegerType"}
    return {f["name"]: names[f["type"]] for f in fields}
