"""Seeded website-activity traffic: persistent users, sessions on a site map, a known conversion truth.

The behaviour model (every number below is a constant of this module or a key of ``generator:``):

Users
    ``generator.users`` persistent users, drawn from the run's seed alone. Each has a stable
    ``user_id``, device type, browser, timezone and public IPv4 address, and an activity weight
    from a Pareto law (shape 1.5, capped at 100x the smallest): a few users make many sessions.
    Producer *i* of *n* owns the users whose index is *i* modulo *n*, so a user's sessions, and so
    every session, stay in one topic. Device types are given by activity, not by head count: users
    are taken heaviest first and each gets the device furthest below its target share of activity
    (:data:`DEVICE_MIX`: desktop 50 %, mobile 42 %, tablet 8 %), so the event shares per device are
    stable from seed to seed even though a few users dominate. Browsers follow the device
    (:data:`BROWSER_MIX`). Timezones: 75 % of users from the shop's markets (:data:`MARKETS`), the
    rest from a pool of Faker timezones. IP addresses: a Faker pool of public /16 networks (ISPs),
    one host per user.

Sessions
    Session starts form a Poisson process whose intensity follows a daily and weekly profile in
    each user's *local* time (:data:`HOURLY` x :data:`WEEKDAY`, low at night, peaks at lunch and in
    the evening, busier at the weekend), drawn by thinning: candidate starts come at the peak rate,
    a candidate picks a user by activity weight and is kept with probability profile(user's local
    hour) / peak. The mean rate comes from the simulated span: a run of a given number of events
    (``make all``, ``make produce EVENTS=...``) spreads them over ``generator.span_h`` simulated
    hours (168: a week, so every run holds each weekday and local hour), the rate being the
    events over :data:`EVENTS_PER_SESSION` (the navigation model's mean, about 12) and the span.
    A run without an event count, or paced by ``RATE``, or ``span_h: 0``, uses
    ``generator.sessions_per_hour`` (both producers together) instead. The UTC offset of a
    timezone is taken at the start instant (a daylight-saving change within a run is ignored).

Navigation
    A Markov chain over the site map (:data:`TRANSITIONS`): entry on home, category, product or
    search; from each page kind a probability to leave the site (exit) and to go to each other
    kind; the cart is likelier right after an add to cart. Page URLs: ``/``, ``/search``,
    ``/category/<category>``, ``/product/<category>/<name>`` (names from Faker words, fixed for a
    configuration), ``/cart``, ``/checkout``, ``/checkout/confirmation``, ``/account``, ``/help``.
    On each page: one ``view``, then some ``scroll`` and ``click`` events, and on a product page
    possibly an ``add_to_cart``. Gaps between events are skewed (log-normal): a few seconds on a
    page, about 15 s median between pages, rarely minutes. A session has at most
    ``generator.max_pages`` pages.

Conversion (the ground truth)
    When the walk ends, the session converts with the probability
    ``p = sigmoid(sum(TRUE_COEFFICIENTS[f] * x[f]))`` over the observable features of the session
    so far (:data:`FEATURES`: pages viewed, product pages viewed, cart adds, whether it reached
    /checkout, used search, came from a returning user (one with an earlier session in this
    stream), on mobile, started in the local evening, 18-23 h). A converted session ends with one
    ``purchase`` event on ``/checkout/confirmation``; it is always the last event, so features
    computed from the events before it do not leak the label. Each producer writes one row per
    session to ``paths.ground_truth``/``<topic>.parquet`` (see :meth:`EventGenerator.ground_truth`),
    never to Kafka.

Events
    The 12 fields of the original schema, as compact JSON in :data:`~website_activity.core.schema.EVENT_FIELDS`
    order. Timestamps are UTC with milliseconds (``2026-01-05T08:00:00.123+00:00``) from a
    simulated clock starting at ``generator.start_time`` (or the instant given to ``--start``).
    Clicks lie inside the device's viewport (``validation.viewports``, which the quality gate
    checks too: desktop 1920x1080, tablet 820x1180, mobile 390x844), centred horizontally and
    denser near the top; every other action carries ``-1, -1`` (:data:`NO_COORDINATE`): the columns
    stay integers. A stream interleaves the sessions that overlap in time, in event-time order.

Faults (``generator.faults``, rates per valid event, 0 disables)
    ``duplicate``: a record re-sent (same key, same bytes) up to 2000 records later. ``late``: a
    whole session whose event times are ``late_by_s`` behind the stream it travels in (its events
    are among the N valid events). Malformed extra records, keyed by the session of the event they
    spoil: ``not_json``, ``truncated_json``, ``missing_field``, ``wrong_type`` (a coordinate as a
    string), ``unknown_enum`` (action, device or browser outside ``schema.enums``),
    ``out_of_viewport`` (a click outside its device's viewport), ``oversize`` (a value larger than
    ``ingest.max_record_bytes``). Malformed records carry fresh event ids. Faults come from random
    generators of their own: the valid events are the same whatever the fault rates (but for the
    late sessions' timestamps).

Live mode (``START=now``, ``make live``)
    Event times are the wall clock at emission, whatever the rate: the producer sends each record
    once the wall clock has reached its time (:attr:`Chunk.emit_ms`), and ``RATE`` sets the session
    start rate (so how many sessions are on the site at once), not how fast time passes. The
    session rate is ``live_rate`` events per second over :data:`LIVE_EVENTS_PER_SESSION`,
    corrected at every batch of candidates for the share of users the daily profile keeps at that
    instant (:meth:`EventGenerator._acceptance`), so the stream's rate stays at ``live_rate``
    whatever the hour. The clock starts :data:`LIVE_WARMUP_S` before the start instant and the
    events before it are not sent: the stream opens with the sessions already on the site, at
    full rate (their ground truth says ``complete = false``). Sessions keep their own gaps.

Reproducible: the same seed, configuration and start give the same records, byte for byte
(ids are UUIDs drawn from seeded generators). No Faker call per event: pools are built once and
the per-event work is vectorised (ids, timestamps, coordinates) or joins pre-encoded JSON pieces.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import math
import random
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from website_activity.core.errors import ConfigError
from website_activity.core.schema import EVENT_FIELDS, EVENT_SCHEMA, NO_COORDINATE

if TYPE_CHECKING:
    import pyarrow as pa

    from website_activity.core.config import Settings

ACTIONS = ("view", "click", "scroll", "add_to_cart", "purchase")
VIEW, CLICK, SCROLL, ADD_TO_CART, PURCHASE = range(len(ACTIONS))

DEVICE_MIX = {"desktop": 0.50, "mobile": 0.42, "tablet": 0.08}
"""Target share of activity (sessions) per device type."""

BROWSER_MIX = {
    "desktop": {"Chrome": 0.64, "Edge": 0.13, "Safari": 0.10, "Firefox": 0.09, "Opera": 0.04},
    "mobile": {"Chrome": 0.58, "Safari": 0.36, "Opera": 0.03, "Firefox": 0.02, "Edge": 0.01},
    "tablet": {"Safari": 0.52, "Chrome": 0.40, "Edge": 0.04, "Firefox": 0.02, "Opera": 0.02},
}

MARKETS = {  # timezone -> share of the users who come from the shop's markets
    "Europe/London": 0.14, "Europe/Paris": 0.14, "Europe/Berlin": 0.14, "Europe/Madrid": 0.08,
    "Europe/Rome": 0.06, "America/New_York": 0.16, "America/Chicago": 0.09,
    "America/Los_Angeles": 0.09, "America/Sao_Paulo": 0.04, "Asia/Tokyo": 0.03, "Australia/Sydney": 0.02,
}
MARKET_SHARE = 0.75

HOURLY = (0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.30, 0.60, 0.90, 1.05, 1.10, 1.20,
          1.40, 1.30, 1.10, 1.05, 1.10, 1.25, 1.45, 1.70, 1.85, 1.70, 1.20, 0.60)
"""Relative session starts per local hour (0-23)."""
WEEKDAY = (0.95, 0.92, 0.92, 0.95, 1.00, 1.18, 1.12)
"""Relative session starts per local weekday, Monday first."""

# Page kinds of the site map.
HOME, SEARCH, CATEGORY, PRODUCT, CART, CHECKOUT, CONFIRMATION, ACCOUNT, HELP = range(9)
ENTRY = ((HOME, 0.45), (CATEGORY, 0.18), (PRODUCT, 0.27), (SEARCH, 0.10))
TRANSITIONS: dict[int, tuple[float, tuple[tuple[int, float], ...]]] = {
    # kind: (exit probability, ((next kind, probability), ...)); each row sums to 1
    HOME: (0.22, ((CATEGORY, 0.40), (SEARCH, 0.20), (PRODUCT, 0.12), (ACCOUNT, 0.04), (HELP, 0.02))),
    SEARCH: (0.15, ((PRODUCT, 0.55), (CATEGORY, 0.15), (SEARCH, 0.10), (HOME, 0.05))),
    CATEGORY: (0.20, ((PRODUCT, 0.55), (CATEGORY, 0.10), (SEARCH, 0.10), (HOME, 0.05))),
    PRODUCT: (0.28, ((PRODUCT, 0.32), (CATEGORY, 0.15), (SEARCH, 0.08), (CART, 0.12), (HOME, 0.05))),
    CART: (0.25, ((CHECKOUT, 0.45), (PRODUCT, 0.15), (CATEGORY, 0.10), (HOME, 0.05))),
    CHECKOUT: (0.55, ((CART, 0.35), (HOME, 0.10))),
    ACCOUNT: (0.30, ((HOME, 0.40), (CART, 0.20), (CATEGORY, 0.10))),
    HELP: (0.50, ((HOME, 0.30), (SEARCH, 0.20))),
}
AFTER_ADD_TO_CART = (0.15, ((CART, 0.45), (PRODUCT, 0.25), (CATEGORY, 0.10), (CHECKOUT, 0.05)))
"""The product page's row right after an add to cart."""
ADD_TO_CART_P = 0.22
# (scrolls, clicks) as cumulative probabilities of 0, 1, 2, 3 per page kind
SCROLLS = {HOME: (0.40, 0.75, 0.92), SEARCH: (0.45, 0.80, 0.95), CATEGORY: (0.25, 0.60, 0.85),
           PRODUCT: (0.20, 0.55, 0.82), CART: (0.70, 0.92, 0.98), CHECKOUT: (0.60, 0.90, 0.97),
           ACCOUNT: (0.70, 0.92, 0.98), HELP: (0.35, 0.70, 0.90)}
CLICKS = {HOME: (0.35, 0.75, 0.93), SEARCH: (0.30, 0.70, 0.92), CATEGORY: (0.35, 0.75, 0.93),
          PRODUCT: (0.40, 0.78, 0.94), CART: (0.30, 0.70, 0.92), CHECKOUT: (0.15, 0.50, 0.80),
          ACCOUNT: (0.30, 0.70, 0.92), HELP: (0.45, 0.85, 0.96)}
STEP_GAP = (math.log(3.0), 0.9)     # log-normal (mu, sigma) in seconds between events on a page
PAGE_GAP = (math.log(15.0), 1.0)    # ... between the last event of a page and the next page's view
PURCHASE_GAP = (math.log(40.0), 0.6)
MAX_GAP_S = 600.0

FEATURES = ("page_views", "product_views", "cart_adds", "checkout", "search", "returning",
            "mobile", "evening")
"""The observable session features of the conversion model (columns of the ground truth)."""
INTERCEPT = -3.4
TRUE_COEFFICIENTS = {
    "page_views": -0.08,    # pages viewed (views, the purchase excluded): long aimless visits convert less
    "product_views": 0.15,  # views of /product/ pages
    "cart_adds": 0.80,      # add_to_cart events
    "checkout": 1.80,       # 1 if the session viewed /checkout
    "search": 0.35,         # 1 if the session viewed /search
    "returning": 0.60,      # 1 if the user had an earlier session in this stream
    "mobile": -0.60,        # 1 on a mobile device
    "evening": 0.40,        # 1 if the session started between 18:00 and 23:00 local time
}
"""Fixed coefficients of the true conversion model; ``p = sigmoid(INTERCEPT + sum(coef * x))``."""

FAULT_KINDS = ("duplicate", "late", "not_json", "truncated_json", "missing_field", "wrong_type",
               "unknown_enum", "out_of_viewport", "oversize")
MALFORMED = FAULT_KINDS[2:]
DUPLICATE_MAX_DELAY = 2000
CHUNK = 8192


def json_joints(schema: Sequence[tuple[str, str]]) -> tuple[dict[str, bytes], bytes]:
    """The compact JSON around an event's values, from the schema: what comes before each field's
    value (the previous value's closing quote, the comma, the key, the opening quote), and the end.

    A record is then the joint before each field followed by its value, then the end: what
    ``json.dumps(event, separators=(",", ":"))`` writes for values that need no escaping.
    """
    before: dict[str, bytes] = {}
    close = b"{"
    for name, kind in schema:
        quote = b'"' if kind != "integer" else b""
        before[name] = close + (b'"%s":' % name.encode()) + quote
        close = quote + b","
    return before, close[:-1] + b"}"


_JOINT, _END = json_joints(EVENT_SCHEMA)
# The record is assembled from pieces of consecutive fields (per event, per user, per user and
# action, per session; see EventGenerator._chunk); the joints come from the schema, and so must
# the order the pieces follow.
_PIECES = (("event_id",), ("user_id", "page_url"), ("timestamp",),
           ("action_type", "browser", "timezone", "device_type", "click_coordinates_x"),
           ("click_coordinates_y",), ("session_id", "ip_address"))
if tuple(f for piece in _PIECES for f in piece) != EVENT_FIELDS:
    raise RuntimeError("the generator's record pieces do not follow website_activity.core.schema.EVENT_SCHEMA")


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_MS_PER_HOUR = 3_600_000


def _mean_events_per_session() -> float:
    """The expected events of a session under the navigation model, its purchase left out.

    Expected page visits of the absorbing Markov chain (entry -> :data:`TRANSITIONS`, with the
    product page's row mixed with :data:`AFTER_ADD_TO_CART` by :data:`ADD_TO_CART_P`) times the
    expected actions per page. ``generator.max_pages`` cuts a walk so rarely that it is ignored.
    """
    n = CONFIRMATION + 3
    q = np.zeros((n, n))
    for kind, (_exit, row) in TRANSITIONS.items():
        for nxt, p in row:
            q[kind, nxt] += p
    q[PRODUCT] *= 1.0 - ADD_TO_CART_P
    for nxt, p in AFTER_ADD_TO_CART[1]:
        q[PRODUCT, nxt] += ADD_TO_CART_P * p
    entry = np.zeros(n)
    for kind, p in ENTRY:
        entry[kind] = p
    visits = entry @ np.linalg.inv(np.eye(n) - q)

    def mean(cum: tuple[float, float, float]) -> float:  # of 0..3 from cumulative probabilities
        return (cum[1] - cum[0]) + 2 * (cum[2] - cum[1]) + 3 * (1.0 - cum[2])

    per_page = np.array([1.0 + mean(SCROLLS[k]) + mean(CLICKS[k]) + (ADD_TO_CART_P if k == PRODUCT else 0.0)
                         if k in SCROLLS else 0.0 for k in range(n)])
    return float(visits @ per_page)


EVENTS_PER_SESSION = _mean_events_per_session()
"""The mean events of a session (see :func:`_mean_events_per_session`): turns an event count and a
simulated span into a session rate."""

LIVE_EVENTS_PER_SESSION = EVENTS_PER_SESSION
"""Live mode's events per session: the purchases it leaves out about make up for the walks that
``max_pages`` cuts (measured within 1 % of the asked rate: tests/unit/test_generator.py)."""
LIVE_WARMUP_S = 600.0
"""Live mode: simulated seconds before the start instant, so that the sessions already on the site
are there at the start (few sessions last longer)."""


def extra_record_rate(conf: Mapping[str, Any]) -> float:
    """Extra records per valid event: the duplicates and the malformed records of ``conf["faults"]``."""
    rates = fault_rates(conf.get("faults", {}))
    return sum(rates[k] for k in FAULT_KINDS if k != "late")


LIVE_RATE = 1000.0
"""Records per second of a live run without ``RATE`` (``make live``, ``make produce START=now``)."""


def live_event_rate(conf: Mapping[str, Any], records_per_s: float | None, streams: int = 1) -> float:
    """Valid events per second of one of ``streams`` live streams that send ``records_per_s``
    records per second together, faults included (``None``: :data:`LIVE_RATE`)."""
    rate = LIVE_RATE if records_per_s is None else records_per_s
    return rate / streams / (1.0 + extra_record_rate(conf))


def sessions_per_hour(conf: Mapping[str, Any], events: int | None) -> float:
    """The mean session starts per simulated hour of a stream that sends ``events`` valid events.

    ``events`` spread over ``conf["span_h"]`` hours; without an event count (a run by duration)
    or with ``span_h`` 0, ``conf["sessions_per_hour"]`` as configured.
    """
    span_h = float(conf.get("span_h", 0) or 0)
    if events is None or events <= 0 or span_h <= 0:
        return float(conf["sessions_per_hour"])
    return events / (EVENTS_PER_SESSION * span_h)


def conversion_probability(x: Mapping[str, float]) -> float:
    """The true conversion probability of a session with features ``x`` (keys: :data:`FEATURES`)."""
    z = INTERCEPT + sum(TRUE_COEFFICIENTS[f] * float(x[f]) for f in FEATURES)
    return 1.0 / (1.0 + math.exp(-z))


def uuid4_block(rng: np.random.Generator, n: int) -> list[bytes]:
    """``n`` version-4 UUIDs as 36-byte ASCII strings, from ``rng`` (vectorised)."""
    b = np.frombuffer(rng.bytes(16 * n), np.uint8).reshape(n, 16).copy()
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    h = np.empty((n, 32), np.uint8)
    h[:, 0::2] = _HEX[b >> 4]
    h[:, 1::2] = _HEX[b & 15]
    out = np.full((n, 36), ord("-"), np.uint8)
    out[:, 0:8], out[:, 9:13], out[:, 14:18] = h[:, 0:8], h[:, 8:12], h[:, 12:16]
    out[:, 19:23], out[:, 24:36] = h[:, 16:20], h[:, 20:32]
    return out.view("S36").ravel().tolist()


def _uuid(r: random.Random) -> str:
    return str(uuid.UUID(int=r.getrandbits(128), version=4))


def _cumulative(pairs: Sequence[tuple[Any, float]]) -> tuple[list[Any], list[float]]:
    values, cum, total = [], [], 0.0
    for value, p in pairs:
        total += p
        values.append(value)
        cum.append(total)
    return values, [c / total for c in cum]


def _action_table(kind: int) -> tuple[list[float], list[tuple[tuple[int, ...], bool]]]:
    """The joint law of one page's actions: view, scrolls, clicks, maybe an add to cart."""
    def law(cum: tuple[float, float, float]) -> list[float]:
        return [cum[0], cum[1] - cum[0], cum[2] - cum[1], 1.0 - cum[2]]

    add_p = ADD_TO_CART_P if kind == PRODUCT else 0.0
    pairs = []
    for n_scroll, ps in enumerate(law(SCROLLS[kind])):
        for n_click, pc in enumerate(law(CLICKS[kind])):
            for added, pa in ((False, 1.0 - add_p), (True, add_p)):
                if ps * pc * pa > 0:
                    acts = (VIEW, *[SCROLL] * n_scroll, *[CLICK] * n_click, *([ADD_TO_CART] if added else []))
                    pairs.append(((acts, added), ps * pc * pa))
    choices, cum = _cumulative(pairs)
    cum[-1] = 1.0 + 1e-9
    return cum, choices


def _next_table(row: tuple[float, tuple[tuple[int, float], ...]]) -> tuple[list[float], list[int]]:
    kinds, cum = _cumulative([(-1, row[0]), *row[1]])  # -1: leave the site
    cum[-1] = 1.0 + 1e-9
    return cum, kinds


def _combo_tables() -> tuple[np.ndarray, ...]:
    """Every page kind's action combinations as arrays, for the vectorised walk."""
    n_kinds = CONFIRMATION + 3  # every kind index (CONFIRMATION is never walked)
    tables = {k: _action_table(k) for k in SCROLLS}
    width = max(len(cum) for cum, _ in tables.values())
    base = np.zeros(n_kinds, np.int64)
    cum = np.full((n_kinds, width), 2.0)
    added, lens, offs, actions = [], [], [], []
    for k in range(n_kinds):
        base[k] = len(added)
        if k not in tables:
            continue
        c, choices = tables[k]
        cum[k, :len(c)] = c
        for acts, add in choices:
            added.append(add)
            offs.append(len(actions))
            lens.append(len(acts))
            actions.extend(acts)
    return (base, cum, np.array(added), np.array(lens, np.int64), np.array(offs, np.int64),
            np.array(actions, np.int64))


_COMBOS = _combo_tables()
# Next page kind: one row per kind (by index), then the row after an add to cart; -1 leaves the site.
_NEXT_ROWS = [_next_table(TRANSITIONS[k]) if k in TRANSITIONS else ([2.0], [-1]) for k in range(CONFIRMATION + 3)]
_NEXT_ROWS.append(_next_table(AFTER_ADD_TO_CART))
_NEXT_WIDTH = max(len(c) for c, _ in _NEXT_ROWS)
_NEXT_ROWS_CUM = np.array([c + [2.0] * (_NEXT_WIDTH - len(c)) for c, _ in _NEXT_ROWS])
_NEXT_ROWS_KIND = np.array([k + [-1] * (_NEXT_WIDTH - len(k)) for _, k in _NEXT_ROWS])


def parse_start(value: str) -> datetime:
    """``now`` or an ISO-8601 instant (with an offset) -> an aware datetime in UTC, whole milliseconds."""
    if value.strip().lower() == "now":
        t = datetime.now(timezone.utc)
    else:
        try:
            t = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"start time {value!r} is not 'now' nor an ISO-8601 instant") from exc
        if t.tzinfo is None:
            raise ConfigError(f"start time {value!r} needs a UTC offset, e.g. +00:00")
    t = t.astimezone(timezone.utc)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def fault_rates(conf: Mapping[str, Any]) -> dict[str, float]:
    """``generator.faults`` checked: each rate in [0, 1), malformed and duplicate rates summing below 1."""
    rates = {}
    for kind in FAULT_KINDS:
        rate = float(conf.get(kind, 0.0))
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"generator.faults.{kind} must be a rate in [0, 1), got {rate}")
        rates[kind] = rate
    if sum(rates[k] for k in FAULT_KINDS if k != "late") >= 1.0:
        raise ConfigError("generator.faults: the rates of extra records must sum to less than 1")
    return rates


@dataclass
class Users:
    """The user population of a run (all producers), from its seed alone."""

    ids: list[str]
    device: np.ndarray        # index into devices
    browser: list[str]
    tz: list[str]
    offset_ms: np.ndarray     # UTC offset at the start instant
    ip: list[str]
    weight: np.ndarray
    devices: list[str]


def make_users(count: int, seed: int, devices: Sequence[str], browsers: Sequence[str],
               start: datetime, streams: int = 1) -> Users:
    """Build ``count`` users from ``seed`` (see the module docstring)."""
    from zoneinfo import ZoneInfo

    from faker import Faker

    rng = np.random.default_rng([seed, 0x5E55])
    r = random.Random(f"users:{seed}")
    fake = Faker()
    fake.seed_instance(seed)
    ids = [_uuid(r) for _ in range(count)]
    weight = np.minimum((1.0 - rng.random(count)) ** (-1 / 1.5), 100.0)

    # Devices by activity, per producer's half: heaviest users first, each to the device furthest
    # below its target share of the activity assigned so far.
    mix = np.array([DEVICE_MIX.get(d, 0.05) for d in devices])
    mix /= mix.sum()
    device = np.zeros(count, np.int64)
    for part in range(streams):
        members = np.arange(part, count, streams)
        assigned = np.zeros(len(devices))
        cum = 0.0
        for i in members[np.argsort(-weight[members], kind="stable")].tolist():
            cum += weight[i]
            j = int(np.argmax(mix * cum - assigned))
            device[i] = j
            assigned[j] += weight[i]

    tables = []
    for d in devices:
        table = {b: p for b, p in BROWSER_MIX.get(d, {}).items() if b in browsers} or {b: 1.0 for b in browsers}
        tables.append(_cumulative(list(table.items())))
    browser = []
    for d in device.tolist():
        names, cumw = tables[d]
        browser.append(names[min(bisect.bisect_right(cumw, r.random()), len(names) - 1)])

    pool = sorted({fake.timezone() for _ in range(300)})
    markets, market_cum = _cumulative(list(MARKETS.items()))
    tz = [markets[min(bisect.bisect_right(market_cum, r.random()), len(markets) - 1)] if r.random() < MARKET_SHARE
          else pool[r.randrange(len(pool))] for _ in range(count)]
    offsets: dict[str, int] = {}
    for name in set(tz):
        try:
            delta = start.astimezone(ZoneInfo(name)).utcoffset()
            offsets[name] = int(delta.total_seconds() * 1000) if delta is not None else 0
        except Exception:  # a name the system's tz database lacks: treat as UTC
            offsets[name] = 0
    offset_ms = np.array([offsets[name] for name in tz], np.int64)

    # Public /16 networks (ISPs) from Faker, one host each per user; networks that hold a
    # special-purpose range (documentation, benchmarking, ...) are left out.
    special = [n for n in (ipaddress.ip_network(x) for x in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3"))]
    networks = []
    while len(networks) < 256:
        net = ipaddress.ip_network((int(ipaddress.IPv4Address(fake.ipv4_public())) & 0xFFFF0000, 16))
        if not any(net.overlaps(x) for x in special):
            networks.append(int(net.network_address))
    hosts = rng.integers(1, 0xFFFF, size=count).tolist()
    picks = rng.integers(0, len(networks), size=count).tolist()
    ip = [f"{(a := networks[p] | h) >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
          for p, h in zip(picks, hosts)]
    return Users(ids, device, browser, tz, offset_ms, ip, weight, list(devices))


def site_map(conf: Mapping[str, Any]) -> tuple[list[str], dict[int, list[int]], list[list[int]]]:
    """Page paths of the site: fixed pages, categories, products (names from Faker words).

    Returns:
        (paths, {kind: [page indices]} for the fixed kinds and CATEGORY, products per category).
    """
    from faker import Faker

    fake = Faker()
    fake.seed_instance(zlib.crc32(conf["site"].encode()))
    paths = ["/", "/search", "/cart", "/checkout", "/checkout/confirmation", "/account", "/help"]
    kinds = {HOME: [0], SEARCH: [1], CART: [2], CHECKOUT: [3], CONFIRMATION: [4], ACCOUNT: [5], HELP: [6]}
    kinds[CATEGORY] = []
    products: list[list[int]] = []
    for category in conf["categories"]:
        kinds[CATEGORY].append(len(paths))
        paths.append(f"/category/{category}")
    for category in conf["categories"]:
        ids = []
        for n in range(conf["products_per_category"]):
            ids.append(len(paths))
            paths.append(f"/product/{category}/{fake.word()}-{fake.word()}-{n + 1}")
        products.append(ids)
    return paths, kinds, products


@dataclass
class Chunk:
    """Records ready to send, in stream order."""

    keys: list[bytes]
    values: list[bytes]
    counts: dict[str, int]          # "event" (valid events) and each fault kind
    first_ms: int | None = None     # earliest and latest event time among the valid events
    last_ms: int | None = None
    emit_ms: list[int] | None = None  # live mode: when to send each record (epoch ms), non-decreasing


class _Pending:
    """Events drawn but not yet sent, as arrays per batch of sessions."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []  # (emit, ts, page, action, session, user, late)
        self.size = 0
        self.ordered = True  # the pool is sorted by emit time, ties in drawing order

    def add(self, part: tuple[np.ndarray, ...]) -> None:
        self.parts.append(part)
        self.size += len(part[0])
        self.ordered = False

    def merged(self) -> tuple[np.ndarray, ...]:
        if len(self.parts) > 1:
            self.parts = [tuple(np.concatenate(cols) for cols in zip(*self.parts))]
        return self.parts[0]


def _check_conf(conf: Mapping[str, Any], streams: int) -> None:
    if conf["users"] < streams:
        raise ConfigError(f"generator.users must be at least the number of topics ({streams})")
    if conf["sessions_per_hour"] <= 0:
        raise ConfigError("generator.sessions_per_hour must be > 0")
    if float(conf.get("span_h", 0) or 0) < 0:
        raise ConfigError("generator.span_h must be >= 0 (0: use generator.sessions_per_hour)")


class EventGenerator:
    """The records of one producer (stream ``index`` of ``streams``), deterministic for its inputs.

    Args:
        conf: The ``generator`` section of the configuration.
        enums: ``schema.enums``.
        seed: The run's seed.
        index: This producer's position in ``topics.names``.
        streams: How many producers share the users.
        viewports: ``validation.viewports``: ``device_type -> [width, height]``.
        max_record_bytes: ``ingest.max_record_bytes`` (an ``oversize`` record exceeds it).
        start: The simulated clock's start; default ``conf["start_time"]``.
        events: The valid events this stream will send, when known: they span ``conf["span_h"]``
            simulated hours (see :func:`sessions_per_hour`); ``None``: ``conf["sessions_per_hour"]``
            of all streams together.
        live_rate: Live mode (see the module docstring): this stream's valid events per second
            (:func:`live_event_rate`); the event times are then the times to send the records at.
    """

    def __init__(self, conf: Mapping[str, Any], enums: Mapping[str, Sequence[str]], seed: int,
                 index: int, streams: int, viewports: Mapping[str, Sequence[int]],
                 max_record_bytes: int = 65536, start: datetime | str | None = None,
                 events: int | None = None, live_rate: float | None = None):
        _check_conf(conf, streams)
        self.conf = conf
        self.seed, self.index, self.streams = seed, index, streams
        self.enums = {k: list(v) for k, v in enums.items()}
        self.viewports = {d: (int(w), int(h)) for d, (w, h) in viewports.items()}
        self.max_record_bytes = max_record_bytes
        self.rates = fault_rates(conf.get("faults", {}))
        self.late_ms = int(conf.get("faults", {}).get("late_by_s", 7200) * 1000)
        start = start if start is not None else conf["start_time"]
        self.start = start if isinstance(start, datetime) else parse_start(start)
        self.start_ms = int(self.start.timestamp() * 1000)
        self._init_users()
        self._init_site()
        self._init_templates()
        self._init_clock(events, live_rate)
        self._init_rngs()
        self._init_sessions()

    def _init_users(self) -> None:
        """The run's users, and this stream's share of them with their activity law."""
        conf = self.conf
        self.users = make_users(conf["users"], self.seed, self.enums["device_type"], self.enums["browser"],
                                self.start, self.streams)
        self.mine = np.arange(self.index, conf["users"], self.streams)
        self._user_weights = w = self.users.weight[self.mine]
        self._user_cum_arr = np.cumsum(w) / w.sum()
        self._offsets_arr = self.users.offset_ms[self.mine]
        devices = self.enums["device_type"]
        self._udev = self.users.device[self.mine]
        self._vp = np.array([self.viewports[d] for d in devices], np.int64)
        self._mobile = devices.index("mobile") if "mobile" in devices else -1

    def _init_site(self) -> None:
        """The site map and the navigation tables the walk indexes."""
        self.paths, self.kinds, self.products = site_map(self.conf)
        self._first_product = len(self.kinds[CATEGORY]) + self.kinds[CATEGORY][0]
        self._checkout, self._search = self.kinds[CHECKOUT][0], self.kinds[SEARCH][0]
        self._confirmation = self.kinds[CONFIRMATION][0]
        self._entry_kinds, self._entry_cum = _cumulative(ENTRY)
        self._entry_arr, self._entry_cum_arr = np.array(self._entry_kinds), np.array(self._entry_cum)
        self._entry_cum_arr[-1] = 1.0 + 1e-9
        self._n_categories = len(self.kinds[CATEGORY])
        self._per_category = int(self.conf["products_per_category"])
        self._first_category = self.kinds[CATEGORY][0]
        self._fixed_arr = np.array([self.kinds[k][0] if k in self.kinds and k != CATEGORY else -1
                                    for k in range(CONFIRMATION + 3)])
        (self._combo_base, self._combo_cum, self._combo_added, self._combo_len, self._combo_off,
         self._combo_actions) = _COMBOS
        self._next_kind, self._next_cum = _NEXT_ROWS_KIND, _NEXT_ROWS_CUM
        self._ev_pages: list[int] = []

    def _init_templates(self) -> None:
        """Pre-encoded JSON pieces: per user (of this stream), per action, per session."""
        devices = self.enums["device_type"]
        site = self.conf["site"].rstrip("/").encode()
        self._url = [p.encode() for p in self.paths]
        self._upre: list[bytes] = []
        self._umid: list[bytes] = []
        j = _JOINT
        for u in self.mine:
            dev = devices[self.users.device[u]].encode()
            browser, tz = self.users.browser[u].encode(), self.users.tz[u].encode()
            self._upre.append(j["user_id"] + self.users.ids[u].encode() + j["page_url"] + site)
            for action in ACTIONS:
                self._umid.append(b"".join((b"+00:00", j["action_type"], action.encode(), j["browser"], browser,
                                            j["timezone"], tz, j["device_type"], dev,
                                            j["click_coordinates_x"])))

    def _init_clock(self, events: int | None, live_rate: float | None) -> None:
        """The session-start process: the daily profile, the candidates' mean gap, live mode."""
        conf = self.conf
        profile = np.array([[h * d for h in HOURLY] for d in WEEKDAY]).ravel()
        self._profile_arr = profile / profile.mean()   # index: weekday * 24 + hour
        self._pmax = float(self._profile_arr.max())
        # A span: this stream's own events over it; else the configured rate of all streams.
        rate_per_ms = (sessions_per_hour(conf, events) if events is not None and conf.get("span_h")
                       else conf["sessions_per_hour"] / self.streams) / _MS_PER_HOUR
        self._mean_gap_ms = 1.0 / (rate_per_ms * self._pmax)
        self._t = 0.0  # ms since start of the last candidate
        self.live = live_rate is not None
        if live_rate is not None:
            if live_rate <= 0:
                raise ConfigError(f"the live rate must be > 0 events per second, got {live_rate}")
            self._live_sessions_per_ms = live_rate / LIVE_EVENTS_PER_SESSION / 1000.0
            w = self._user_weights
            self._user_p = w / w.sum()
            self._t = -LIVE_WARMUP_S * 1000.0  # the sessions already on the site at the start

    def _init_rngs(self) -> None:
        """One random generator per quantity, from the seed and the stream."""
        seed, index = self.seed, self.index
        # Live: the start instant joins the seed (users stay: a user comes back from run to run), so
        # that two live runs of one seed do not send the same session and event ids (silver would
        # drop the second run's events as duplicates). A replay's seeds are as they always were.
        salt = [self.start_ms] if self.live else []
        self.wrng = np.random.default_rng([seed, index, 0xA1C, *salt])
        self.late_rng = np.random.default_rng([seed, index, 0x1A7E, *salt])
        self.fr = random.Random(f"faults:{seed}:{index}" + "".join(f":{v}" for v in salt))
        self.frng = np.random.default_rng([seed, index, 0xFA17, *salt])
        # One generator per vectorised quantity: the stream does not depend on how it is chunked.
        self.grng = np.random.default_rng([seed, index, 0x6A95, *salt])
        self.id_rng = np.random.default_rng([seed, index, 0x1D5, *salt])
        self.x_rng = np.random.default_rng([seed, index, 0xC0, *salt])
        self.y_rng = np.random.default_rng([seed, index, 0xC1, *salt])
        self.sid_rng = np.random.default_rng([seed, index, 0x5E5, *salt])
        self.crng = np.random.default_rng([seed, index, 0xC0DE, *salt])
        self._coef = np.array([TRUE_COEFFICIENTS[f] for f in FEATURES])

    def _init_sessions(self) -> None:
        """Sessions, as columns (index = session number in this stream), and the counters."""
        self._sid: list[str] = []
        self._skeys: list[bytes] = []
        self._stail: list[bytes] = []
        self._suser: list[int] = []
        self._sx: list[tuple[int, ...]] = []
        self._sp: list[float] = []
        self._sconv: list[bool] = []
        self._sn: list[int] = []
        self._semitted: list[int] = []
        self._seen: set[int] = set()
        self._pending = _Pending()
        self._dups: list[tuple[int, bytes, bytes]] = []  # (due record number, key, value)
        self.records_out = 0
        self.valid_out = 0
        self.counts = {"event": 0, **{k: 0 for k in FAULT_KINDS}}

    @classmethod
    def from_settings(cls, settings: "Settings", seed: int, stream: str,
                      start: datetime | str | None = None, events: int | None = None,
                      live_rate: float | None = None) -> "EventGenerator":
        """The generator of topic ``stream``: its position in ``topics.names`` picks its users
        (another name, as in tests, gets a position from a hash of the name). ``events``: this
        stream's valid events, when they should span ``generator.span_h``; ``live_rate``: live
        mode at that many valid events per second."""
        topics = settings.topics
        index = topics.index(stream) if stream in topics else zlib.crc32(stream.encode()) % len(topics)
        return cls(settings["generator"], settings["schema"]["enums"], seed, index,
                   len(topics), settings["validation"]["viewports"],
                   settings["ingest"]["max_record_bytes"], start, events, live_rate)

    # -- public iterators ---------------------------------------------------------------------
    def chunks(self, count: int | None, size: int = CHUNK) -> Iterator[Chunk]:
        """Records holding exactly ``count`` valid events (``None``: without end), plus faults,
        ``size`` valid events a chunk. The valid events do not depend on ``size``."""
        while count is None or self.valid_out < count:
            want = size if count is None else min(size, count - self.valid_out)
            yield self._chunk(want)

    def records(self, count: int | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every record, in stream order."""
        for chunk in self.chunks(count):
            yield from zip(chunk.keys, chunk.values)

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """The valid events only, decoded (faults switched off: for tests and checks)."""
        saved = self.rates
        self.rates = {k: 0.0 for k in FAULT_KINDS}
        try:
            for _key, value in self.records(count):
                yield json.loads(value)
        finally:
            self.rates = saved

    # -- sessions -------------------------------------------------------------------------------
    CANDIDATES = 1024  # session-start candidates per batch (about 40 % are kept)

    def _draw_sessions(self) -> int:
        """Draw the next batch of sessions into the pending buffer; the last candidate's time (ms).

        Vectorised over the batch: thinning of the session starts, the Markov walk (one step of
        every session still on the site at a time), the conversion draw and the gaps.
        """
        starts, users, frontier = self._session_starts()
        k = len(starts)
        if k == 0:
            return frontier
        late = self.late_rng.random(k) < self.rates["late"] if self.rates["late"] > 0 else np.zeros(k, bool)
        shifts = np.where(late, self.late_ms, 0)
        sess, page, combo, kd = self._walk(k)
        x = self._features(k, sess, combo, kd, users, starts - shifts)
        p = 1.0 / (1.0 + np.exp(-(INTERCEPT + x @ self._coef)))
        converted = self.crng.random(k) < p
        emit, page, action, session, lengths = self._session_events(k, sess, page, combo, converted, starts)
        ts = emit - shifts[session]
        base = len(self._sid)
        if self.live:  # the events before the start instant were the warm-up: not sent
            now = emit >= self.start_ms
            emit, ts, page, action, session = emit[now], ts[now], page[now], action[now], session[now]
        self._pending.add((emit, ts, page, action, session + base, users[session], late[session]))
        self._add_sessions(users, x, p, converted, lengths)
        return frontier

    def _session_starts(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The starts (epoch ms) and users of the next batch's sessions, and the frontier.

        Thinning: candidates at the peak rate; a candidate's user keeps it by the local profile.
        Live: candidates as often as it takes for the asked session rate after thinning now.
        """
        w = self.wrng
        m = self.CANDIDATES
        gap = (self._acceptance(self.start_ms + int(self._t)) / self._live_sessions_per_ms if self.live
               else self._mean_gap_ms)
        t = self._t + np.cumsum(w.exponential(gap, m))
        self._t = float(t[-1])
        users = np.minimum(np.searchsorted(self._user_cum_arr, w.random(m), side="right"), len(self.mine) - 1)
        hour = (self.start_ms + t.astype(np.int64) + self._offsets_arr[users]) // _MS_PER_HOUR
        keep = w.random(m) * self._pmax < self._profile_arr[((hour // 24 + 3) % 7) * 24 + hour % 24]
        frontier = self.start_ms + int(self._t)
        return self.start_ms + t[keep].astype(np.int64), users[keep], frontier

    def _walk(self, k: int) -> tuple[np.ndarray, ...]:
        """The Markov walk of ``k`` sessions, every session on the site taking one step at a time:
        (session, page, action combo, page kind) of each page view, session by session."""
        w = self.wrng
        kind = self._entry_arr[np.searchsorted(self._entry_cum_arr, w.random(k), side="right")]
        category = (w.random(k) * self._n_categories).astype(np.int64)
        active = np.arange(k)
        steps: list[tuple[np.ndarray, ...]] = []
        for _ in range(self.conf["max_pages"]):
            if not len(active):
                break
            kd = kind[active]
            u = w.random((5, len(active)))
            is_product, is_category = kd == PRODUCT, kd == CATEGORY
            switch = is_category | (is_product & (u[0] < 0.3))
            cat = np.where(switch, (u[1] * self._n_categories).astype(np.int64), category[active])
            category[active] = cat
            item = (self._per_category * u[2] ** 1.6).astype(np.int64)  # a few bestsellers
            page = np.where(is_product, self._first_product + cat * self._per_category + item,
                            np.where(is_category, self._first_category + cat, self._fixed_arr[kd]))
            combo = self._combo_base[kd] + (u[3][:, None] >= self._combo_cum[kd]).sum(1)
            added = self._combo_added[combo]
            row = np.where(added, len(_NEXT_ROWS) - 1, kd)
            nxt = self._next_kind[row, (u[4][:, None] >= self._next_cum[row]).sum(1)]
            steps.append((active, page, combo, kd))
            kind[active] = nxt
            active = active[nxt >= 0]
        sess, page, combo, kd = (np.concatenate(c) for c in zip(*steps))
        order = np.argsort(sess, kind="stable")  # session by session, pages in order
        return sess[order], page[order], combo[order], kd[order]

    def _features(self, k: int, sess: np.ndarray, combo: np.ndarray, kd: np.ndarray, users: np.ndarray,
                  starts: np.ndarray) -> np.ndarray:
        """The observable features of each session (:data:`FEATURES`), the true model's inputs;
        ``starts``: the sessions' event-time starts."""
        return np.stack([
            np.bincount(sess, minlength=k),
            np.bincount(sess[kd == PRODUCT], minlength=k),
            np.bincount(sess[self._combo_added[combo]], minlength=k),
            np.bincount(sess[kd == CHECKOUT], minlength=k) > 0,
            np.bincount(sess[kd == SEARCH], minlength=k) > 0,
            self._returning(users),
            self._udev[users] == self._mobile,
            (lambda h: (h >= 18) & (h < 23))(((starts + self._offsets_arr[users]) // _MS_PER_HOUR) % 24),
        ], axis=1).astype(np.int64)

    def _session_events(self, k: int, sess: np.ndarray, page: np.ndarray, combo: np.ndarray,
                        converted: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, ...]:
        """Each page's actions, then a purchase at the end of each converted session, with skewed
        gaps: (emission time, page, action, session) of every event, and the sessions' lengths."""
        lens = self._combo_len[combo]
        rec = np.repeat(np.arange(len(combo)), lens)
        within = np.arange(len(rec)) - np.repeat(np.cumsum(lens) - lens, lens)
        action = self._combo_actions[self._combo_off[combo][rec] + within]
        buyers = np.flatnonzero(converted)
        session = np.concatenate((sess[rec], buyers))
        page = np.concatenate((page[rec], np.full(len(buyers), self._confirmation)))
        action = np.concatenate((action, np.full(len(buyers), PURCHASE)))
        order = np.argsort(session, kind="stable")
        session, page, action = session[order], page[order], action[order]
        lengths = np.bincount(session, minlength=k)
        first = np.cumsum(lengths) - lengths
        # Skewed gaps (log-normal, capped): between pages before a view, else within the page.
        n = len(action)
        gaps = np.where(action == VIEW, self.grng.lognormal(*PAGE_GAP, n),
                        np.where(action == PURCHASE, self.grng.lognormal(*PURCHASE_GAP, n),
                                 self.grng.lognormal(*STEP_GAP, n)))
        gaps = (np.minimum(gaps, MAX_GAP_S) * 1000).astype(np.int64) + 1
        gaps[first] = 0
        offset = np.cumsum(gaps)
        offset -= np.repeat(offset[first], lengths)
        return starts[session] + offset, page, action, session, lengths

    def _add_sessions(self, users: np.ndarray, x: np.ndarray, p: np.ndarray, converted: np.ndarray,
                      lengths: np.ndarray) -> None:
        """Append a batch of sessions to the session columns (ids, keys, JSON tails, truth)."""
        k = len(users)
        sids = uuid4_block(self.sid_rng, k)
        ips, mine = self.users.ip, self.mine
        ulist = users.tolist()
        self._sid.extend(b.decode() for b in sids)
        self._skeys.extend(sids)
        before_sid, before_ip = _JOINT["session_id"], _JOINT["ip_address"]
        self._stail.extend(before_sid + sid + before_ip + ips[mine[u]].encode() + _END
                           for sid, u in zip(sids, ulist))
        self._suser.extend(ulist)
        self._sx.extend(map(tuple, x.tolist()))
        self._sp.extend(p.tolist())
        self._sconv.extend(converted.tolist())
        self._sn.extend(lengths.tolist())
        self._semitted.extend([0] * k)

    def _acceptance(self, at_ms: int) -> float:
        """The share of candidates that thinning keeps at ``at_ms`` (epoch ms): the users' activity
        weights times their local profile at that instant, over the peak."""
        hour = (at_ms + self._offsets_arr) // _MS_PER_HOUR
        profile = self._profile_arr[((hour // 24 + 3) % 7) * 24 + hour % 24]
        return float(self._user_p @ profile) / self._pmax

    def _returning(self, users: np.ndarray) -> np.ndarray:
        """1 for a session whose user had an earlier session in this stream (in start order)."""
        seen = self._seen
        out = np.zeros(len(users), np.int64)
        for i, u in enumerate(users.tolist()):
            if u in seen:
                out[i] = 1
            else:
                seen.add(u)
        return out

    # -- chunks -----------------------------------------------------------------------------------
    def _ready(self, want: int) -> tuple[np.ndarray, ...]:
        """The next ``want`` events in stream order: sessions are drawn until that many are final.

        Every session still to come starts after the latest one drawn (the frontier), so a pending
        event before the frontier has its place in the stream for good; ties keep drawing order.
        """
        pend = self._pending
        check_at = want
        frontier = self.start_ms + int(self._t)  # where the last draw ended
        while True:
            # Draw only while the final events fall short: a small chunk (live mode sends a
            # quarter of a second at a time) must not pile up pending sessions, each draw adds
            # about 5,000 events.
            if pend.size >= check_at:
                emit = pend.merged()[0]
                final = int(np.count_nonzero(emit < frontier))
                if final >= want:
                    break
                check_at = pend.size + (want - final)
            frontier = self._draw_sessions()
        cols = pend.merged()
        if pend.ordered:  # nothing drawn since the last chunk: the pool is in stream order already
            pend.parts = [tuple(c[want:] for c in cols)]
            pend.size -= want
            return tuple(c[:want] for c in cols)
        # The rest stays in stream order (ties in drawing order, as the stable sort had them): the
        # next chunk sorts that run and the sessions drawn since, not the whole pool again.
        order = np.argsort(cols[0], kind="stable")
        cols = tuple(c[order] for c in cols)
        pend.parts = [tuple(c[want:] for c in cols)]
        pend.size = len(order) - want
        pend.ordered = True
        return tuple(c[:want] for c in cols)

    def _chunk(self, want: int) -> Chunk:
        emit, ts, page, action, session, suser, late = self._ready(want)
        n = len(ts)
        emitted = self._semitted
        for s, c in zip(*(a.tolist() for a in np.unique(session, return_counts=True))):
            emitted[s] += c
        eids = uuid4_block(self.id_rng, n)
        stamps = np.datetime_as_string(ts.astype("datetime64[ms]"), unit="ms").astype("S23").tolist()
        before_y = _JOINT["click_coordinates_y"]
        coords = [b"%d%s%d" % (NO_COORDINATE, before_y, NO_COORDINATE)] * n
        clicks = np.flatnonzero(action == CLICK)
        if len(clicks):
            vp = self._vp[self._udev[suser[clicks]]]
            xs = np.clip(self.x_rng.normal(0.5, 0.2, len(clicks)), 0.0, 0.999999) * vp[:, 0]
            ys = np.minimum(self.y_rng.beta(1.2, 2.5, len(clicks)), 0.999999) * vp[:, 1]
            for i, x, y in zip(clicks.tolist(), xs.astype(np.int64).tolist(), ys.astype(np.int64).tolist()):
                coords[i] = b"%d%s%d" % (x, before_y, y)
        upre, umid, url, stail, skeys = self._upre, self._umid, self._url, self._stail, self._skeys
        head, tsk = _JOINT["event_id"], _JOINT["timestamp"]
        sess = session.tolist()
        values = [b"".join((head, e, upre[u], url[p], tsk, t, umid[m], c, stail[s]))
                  for e, u, p, t, m, c, s in zip(eids, suser.tolist(), page.tolist(), stamps,
                                                 (suser * len(ACTIONS) + action).tolist(), coords, sess)]
        keys = [skeys[s] for s in sess]
        counts = {"event": n}
        if self.rates["late"] > 0:
            counts["late"] = int(np.count_nonzero(late))
        emits = emit.tolist() if self.live else None
        keys, values, emits = self._inject(keys, values, counts, emits)
        self.valid_out += n
        self.records_out += len(values)
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        return Chunk(keys, values, counts, int(ts.min()) if n else None, int(ts.max()) if n else None, emits)

    # -- faults -------------------------------------------------------------------------------------
    def _inject(self, keys: list[bytes], values: list[bytes], counts: dict[str, int],
                emits: list[int] | None = None) -> tuple[list, list, list | None]:
        """The records with the faults inserted; ``emits`` (live): an extra record is sent with
        the record it follows."""
        n = len(values)
        rates, frng = self.rates, self.frng
        inserts: list[tuple[int, int, bytes, bytes]] = []  # (after valid index, order, key, value)
        for kind in ("duplicate", *MALFORMED):
            rate = rates[kind]
            if rate <= 0 or n == 0:
                continue
            k = int(frng.binomial(n, rate))
            counts[kind] = counts.get(kind, 0) + k
            for pos in sorted(frng.integers(0, n, size=k).tolist()):
                if kind == "duplicate":
                    delay = int(frng.integers(1, DUPLICATE_MAX_DELAY + 1))
                    inserts.append((min(pos + delay, n - 1), len(inserts), keys[pos], values[pos]))
                else:
                    inserts.append((pos, len(inserts), keys[pos], self._malformed(kind, values[pos])))
        if not inserts:
            return keys, values, emits
        inserts.sort()
        out_k: list[bytes] = []
        out_v: list[bytes] = []
        out_e: list[int] | None = None if emits is None else []
        prev = 0
        for pos, _, key, value in inserts:
            out_k.extend(keys[prev:pos + 1])
            out_v.extend(values[prev:pos + 1])
            out_k.append(key)
            out_v.append(value)
            if out_e is not None:
                out_e.extend(emits[prev:pos + 1])
                out_e.append(emits[pos])
            prev = pos + 1
        out_k.extend(keys[prev:])
        out_v.extend(values[prev:])
        if out_e is not None:
            out_e.extend(emits[prev:])
        return out_k, out_v, out_e

    def _malformed(self, kind: str, value: bytes) -> bytes:
        r = self.fr
        if kind == "not_json":
            token = r.getrandbits(64)  # each not-JSON record is unique: never taken for a duplicate
            return r.choice((b"<html><body><h1>502 Bad Gateway</h1><!-- %x --></body></html>",
                             b"ping %x", b"event_id=%x&action=view", b"\x00\x17\xfe\x9b binary %x",
                             b"{'event_id': '%x', 'action_type': 'view'}")) % token
        event = json.loads(value)
        event["event_id"] = str(uuid.UUID(bytes=self.frng.bytes(16), version=4))
        if kind == "truncated_json":
            raw = json.dumps(event, separators=(",", ":")).encode()
            return raw[:r.randrange(60, len(raw) - 1)]  # past the (fresh) event id: each one unique
        if kind == "missing_field":
            del event[r.choice(EVENT_FIELDS)]
        elif kind == "wrong_type":
            event[r.choice(("click_coordinates_x", "click_coordinates_y"))] = r.choice(("abc", "12px", "n/a"))
        elif kind == "unknown_enum":
            name, bad = r.choice((("action_type", "hover"), ("device_type", "smartwatch"),
                                  ("browser", "Netscape")))
            event[name] = bad
        elif kind == "out_of_viewport":
            width, height = self.viewports[event["device_type"]]
            event["action_type"] = "click"
            if r.random() < 0.5:
                event["click_coordinates_x"] = width + r.randrange(1, 600)
                event["click_coordinates_y"] = r.randrange(height)
            else:
                event["click_coordinates_x"] = r.randrange(width)
                event["click_coordinates_y"] = height + r.randrange(1, 600)
        elif kind == "oversize":
            extra = self.max_record_bytes + r.randrange(1, 4096) - len(value)
            event["page_url"] += "?utm_content=" + "x" * max(extra, 1)
        return json.dumps(event, separators=(",", ":")).encode()

    # -- ground truth ---------------------------------------------------------------------------
    def ground_truth(self, topic: str) -> "pa.Table":
        """One row per session with at least one event sent: the true model's inputs and outcome.

        Columns: ``session_id, user_id, topic, p_convert, converted, complete`` and the
        :data:`FEATURES`. ``converted`` is the model's draw; ``complete`` is false for a session
        the event count cut short (its purchase, if any, was not sent).
        """
        import pyarrow as pa

        rows = [i for i, e in enumerate(self._semitted) if e > 0]
        ids = self.users.ids
        cols: dict[str, Any] = {
            "session_id": pa.array([self._sid[i] for i in rows], pa.string()),
            "user_id": pa.array([ids[self.mine[self._suser[i]]] for i in rows], pa.string()),
            "topic": pa.array([topic] * len(rows), pa.string()),
            "p_convert": pa.array([self._sp[i] for i in rows], pa.float64()),
            "converted": pa.array([self._sconv[i] for i in rows], pa.bool_()),
            "complete": pa.array([self._semitted[i] == self._sn[i] for i in rows], pa.bool_()),
        }
        for j, name in enumerate(FEATURES):
            cols[name] = pa.array([self._sx[i][j] for i in rows], pa.int64())
        return pa.table(cols)

