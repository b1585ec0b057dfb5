"""The generator: reproducible to the byte, schema-complete, coherent sessions."""

from collections import defaultdict

from website_activity.config import load_config
from website_activity.generator import NO_COORDINATE, EventGenerator
from website_activity.produce import encode, split_events
from website_activity.schema import EVENT_FIELDS

SETTINGS = load_config("local", environ={})


def events(seed: int, stream: str = "producer-a", n: int = 3000) -> list[dict]:
    return list(EventGenerator.from_settings(SETTINGS, seed, stream).events(n))


def test_same_seed_same_bytes_other_seed_other_events() -> None:
    a, b = events(7), events(7)
    assert [encode(e) for e in a] == [encode(e) for e in b]
    assert {e["event_id"] for e in events(8)}.isdisjoint({e["event_id"] for e in a})
    # the two producers of one run send different events
    assert {e["event_id"] for e in events(7, "producer-b")}.isdisjoint({e["event_id"] for e in a})


def test_exact_count_and_fields() -> None:
    evs = events(1, n=1234)
    assert len(evs) == 1234
    assert all(tuple(e) == EVENT_FIELDS for e in evs)
    assert len({e["event_id"] for e in evs}) == 1234  # ids are unique


def test_values_respect_enums_and_viewports() -> None:
    enums = SETTINGS["schema"]["enums"]
    viewports = SETTINGS["validation"]["viewports"]  # the gate checks the same ones
    for e in events(3):
        for field, allowed in enums.items():
            assert e[field] in allowed
        if e["action_type"] == "click":
            width, height = viewports[e["device_type"]]
            assert 0 <= e["click_coordinates_x"] < width and 0 <= e["click_coordinates_y"] < height
        else:
            assert (e["click_coordinates_x"], e["click_coordinates_y"]) == (NO_COORDINATE, NO_COORDINATE)


def test_sessions_are_coherent() -> None:
    by_session = defaultdict(list)
    for e in events(5, n=6000):
        by_session[e["session_id"]].append(e)
    for evs in by_session.values():
        # one user, one device per session; time moves forward; a purchase ends its session
        assert len({(e["user_id"], e["device_type"], e["ip_address"]) for e in evs}) == 1
        assert [e["timestamp"] for e in evs] == sorted(e["timestamp"] for e in evs)
        actions = [e["action_type"] for e in evs]
        assert "purchase" not in actions[:-1]
    converted = sum(evs[-1]["action_type"] == "purchase" for evs in by_session.values())
    assert 0 < converted < len(by_session)


def test_split_events_shares_everything() -> None:
    assert split_events(7, 2) == [4, 3]
    assert sum(split_events(20001, 3)) == 20001
