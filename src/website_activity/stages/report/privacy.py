"""Pseudonymised IP addresses: what reports show instead of a visitor's address.

An IP address is personal data. The lake keeps it as received (bronze holds the raw records
by design, silver the typed events; both stay on the machine that runs the pipeline), but
nothing under ``reports/`` (CSVs, dashboard) shows a raw address. ``report.ip_mode`` chooses how:

``truncate`` (default)
    The /24 network: ``203.0.113.57`` → ``203.0.113.0/24``. Keeps what a traffic analyst needs
    (which networks the visitors come from) and drops the host.
``hash``
    A keyed hash: the first 16 hex digits of HMAC-SHA256(key, address). The same address always
    maps to the same pseudonym for the same key, so visitors can be counted and joined across
    reports, but the address cannot be recovered by hashing all 2^32 candidates without the key.
    The key comes from the environment variable named by ``report.ip_hash_key_env``
    (``WA_IP_HASH_KEY``), never from a committed file.

A value that is not a dotted-quad IPv4 address becomes ``invalid`` in either mode: reports never
echo what they cannot classify.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Callable, Mapping

from website_activity.core.errors import ConfigError
from website_activity.core.schema import IPV4_REGEX

IP_MODES = ("truncate", "hash")
INVALID = "invalid"
_IPV4 = re.compile(IPV4_REGEX)
MIN_KEY_CHARS = 16


def truncate_ip(ip: str) -> str:
    """The address's /24 network in CIDR notation, or ``invalid``."""
    if not isinstance(ip, str) or not _IPV4.match(ip):
        return INVALID
    return ip.rsplit(".", 1)[0] + ".0/24"


def hash_ip(ip: str, key: bytes) -> str:
    """The first 16 hex digits of HMAC-SHA256(key, address), or ``invalid``."""
    if not isinstance(ip, str) or not _IPV4.match(ip):
        return INVALID
    return hmac.new(key, ip.encode("ascii"), hashlib.sha256).hexdigest()[:16]


def ip_pseudonymiser(mode: str, key_env: str, environ: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """The function that turns an address into what reports show, per ``mode`` (``report.ip_mode``).

    Args:
        mode: ``truncate`` or ``hash``.
        key_env: The environment variable that holds the hash's key (``report.ip_hash_key_env``).
        environ: Where to look it up (default: the process's environment).

    Raises:
        ConfigError: An unknown mode, or ``hash`` without a key (of at least 16 characters)
            in the environment.
    """
    if mode == "truncate":
        return truncate_ip
    if mode != "hash":
        raise ConfigError(f"report.ip_mode must be one of {', '.join(IP_MODES)}, got {mode!r}")
    environ = os.environ if environ is None else environ
    name = key_env
    key = environ.get(name, "")
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"report.ip_mode is 'hash' but the environment variable {name} "
                          f"{'is not set' if not key else 'is shorter than 16 characters'} "
                          f"(export a secret key of at least {MIN_KEY_CHARS} characters)")
    secret = key.encode("utf-8")
    return lambda ip: hash_ip(ip, secret)
