"""The event schema, declared once in ``conf/base.yaml`` (``schema.fields``) and derived here."""

from __future__ import annotations

from typing import Any

EVENT_FIELDS = (
    "event_id", "user_id", "page_url", "timestamp", "action_type", "browser", "timezone",
    "device_type", "click_coordinates_x", "click_coordinates_y", "session_id", "ip_address",
)
"""The 12 fields of the original project, in order. The config may not rename them."""

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
