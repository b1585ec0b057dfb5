"""IP pseudonymisation: what reports show instead of an address."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings
from website_activity.core.errors import ConfigError
from website_activity.stages.report.privacy import INVALID, hash_ip, ip_pseudonymiser, truncate_ip


def test_truncate_keeps_the_network_only() -> None:
    assert truncate_ip("203.0.113.57") == "203.0.113.0/24"
    assert truncate_ip("8.8.8.8") == "8.8.8.0/24"
    for bad in ("", "1.2.3", "256.1.1.1", "1.2.3.4 ", "<script>", None, "::1"):
        assert truncate_ip(bad) == INVALID


def test_hash_is_keyed_stable_and_hides_the_address() -> None:
    key = b"k" * 32
    a = hash_ip("198.51.100.7", key)
    assert a == hash_ip("198.51.100.7", key)
    assert a != hash_ip("198.51.100.8", key)
    assert a != hash_ip("198.51.100.7", b"x" * 32)  # another key, another pseudonym
    assert len(a) == 16 and all(c in "0123456789abcdef" for c in a)
    assert "198.51.100.7" not in a
    assert hash_ip("not an ip", key) == INVALID


def test_mode_comes_from_the_config_and_the_key_from_the_environment(tmp_path) -> None:
    def values(settings):  # what the report stage hands the pseudonymiser
        return settings["report"]["ip_mode"], settings["report"]["ip_hash_key_env"]

    assert ip_pseudonymiser(*values(make_settings(tmp_path)))("10.1.2.3") == "10.1.2.0/24"
    hashed = values(make_settings(tmp_path, report__ip_mode="hash"))
    assert hashed == ("hash", "WA_IP_HASH_KEY")
    with pytest.raises(ConfigError, match="WA_IP_HASH_KEY is not set"):
        ip_pseudonymiser(*hashed, environ={})
    with pytest.raises(ConfigError, match="shorter than 16"):
        ip_pseudonymiser(*hashed, environ={"WA_IP_HASH_KEY": "short"})
    f = ip_pseudonymiser(*hashed, environ={"WA_IP_HASH_KEY": "s" * 20})
    assert f("10.1.2.3") == hash_ip("10.1.2.3", b"s" * 20)


def test_unknown_mode_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="report.ip_mode must be"):
        make_settings(tmp_path, report__ip_mode="reverse")
