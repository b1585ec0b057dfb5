"""The declared schema keeps the original project's 12 fields and drives Spark's parse schema."""

from website_activity.adapters.spark import spark_schema
from website_activity.core.config import load_config
from website_activity.core.schema import EVENT_FIELDS, field_names, required_fields


ORIGINAL = ["event_id", "user_id", "page_url", "timestamp", "action_type", "browser", "timezone", "device_type",
            "click_coordinates_x", "click_coordinates_y", "session_id", "ip_address"]


def test_declared_fields_are_the_original_twelve() -> None:
    # the one schema (website_activity.core.schema) keeps the original project's fields, names and order
    fields = load_config("local", environ={}).schema_fields
    assert field_names(fields) == list(EVENT_FIELDS) == ORIGINAL
    assert required_fields(fields) == ORIGINAL


def test_spark_schema_types() -> None:
    fields = load_config("local", environ={}).schema_fields
    schema = spark_schema(fields)
    types = {f.name: f.dataType.simpleString() for f in schema.fields}
    assert types["timestamp"] == "timestamp"
    assert types["click_coordinates_x"] == types["click_coordinates_y"] == "int"
    assert {n for n, t in types.items() if t == "string"} == set(EVENT_FIELDS) - {
        "timestamp", "click_coordinates_x", "click_coordinates_y"}
