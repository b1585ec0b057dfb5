"""Seeded website-activity events: users with stable traits, sessions, a small site map.

A first behaviour model (the generator issue deepens it):

* A population of ``generator.users`` persistent users (from the run's seed alone, so both
  producers share it). Each has a stable device type, browser, timezone and public IPv4
  address (Faker), and an activity weight drawn from a Pareto law: a few users make many
  sessions.
* A session (``session_id``) is one visit of one user. Sessions follow each other in time with
  exponential gaps; events inside a session are 2-90 s apart.
* Navigation walks a small site map (home, search, category, product, cart). Each page is
  viewed (``view``), then may get ``scroll`` and ``click`` events; on product pages the user
  may ``add_to_cart``.
* Conversion: when the walk ends, the session ends in a ``purchase`` (on ``/checkout``) with
  probability ``sigmoid(-2.2 + 1.1*cart_adds + 0.15*product_views - 0.6*[mobile] + 0.3*[returning])``.
  The purchase is always the last event of its session, so features built from the events
  before it do not leak the label.
* Click coordinates lie inside the device's viewport (``validation.viewports`` in the config,
  which the quality gate checks too: desktop 1920x1080, tablet 820x1180, mobile 390x844).
  Events that are not clicks carry ``-1, -1``: the columns stay integers.
* Timestamps start at ``generator.start_time`` (not "now") and are ISO-8601 with a UTC
  offset: the same seed and configuration give the same events, byte for byte.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from faker import Faker

if TYPE_CHECKING:
    from website_activity.config import Settings

DEVICE_WEIGHTS = {"desktop": 0.45, "mobile": 0.45, "tablet": 0.10}
NO_COORDINATE = -1


@dataclass(frozen=True)
class User:
    user_id: str
    device_type: str
    browser: str
    timezone: str
    ip_address: str
    weight: float


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_users(count: int, seed: int, browsers: list[str]) -> list[User]:
    """The user population of a run, from its seed alone."""
    rng = random.Random(f"users:{seed}")
    fake = Faker()
    fake.seed_instance(seed)
    devices = [d for d in DEVICE_WEIGHTS]
    users = []
    for _ in range(count):
        device = rng.choices(devices, weights=[DEVICE_WEIGHTS[d] for d in devices])[0]
        browser = "Safari" if device != "desktop" and rng.random() < 0.5 and "Safari" in browsers \
            else rng.choice(browsers)
        users.append(User(
            user_id=_uuid(rng), device_type=device, browser=browser, timezone=fake.timezone(),
            ip_address=fake.ipv4_public(), weight=rng.paretovariate(1.3),
        ))
    return users


def purchase_probability(cart_adds: int, product_views: int, device: str, returning: bool) -> float:
    """The conversion model of the generator (see the module docstring)."""
    z = -2.2 + 1.1 * cart_adds + 0.15 * product_views - 0.6 * (device == "mobile") + 0.3 * returning
    return 1.0 / (1.0 + math.exp(-z))


class EventGenerator:
    """Events of one producer: a stream of sessions, deterministic for (seed, stream).

    Args:
        gen_conf: The ``generator`` section of the configuration.
        enums: ``schema.enums`` (the browsers to draw from).
        seed: The run's seed.
        stream: The producer's name: each stream draws its own sessions.
        viewports: ``validation.viewports``: ``device_type -> [width, height]``.
    """

    def __init__(self, gen_conf: dict[str, Any], enums: dict[str, list[str]], seed: int, stream: str,
                 viewports: Mapping[str, Sequence[int]]):
        self.conf = gen_conf
        self.viewports = {device: (int(w), int(h)) for device, (w, h) in viewports.items()}
        self.users = make_users(gen_conf["users"], seed, list(enums["browser"]))
        self.rng = random.Random(f"events:{seed}:{stream}")
        self.clock = datetime.fromisoformat(gen_conf["start_time"])
        self.site = gen_conf["site"].rstrip("/")
        self.categories = list(gen_conf["categories"])
        self.products = gen_conf["products_per_category"]
        self.seen_users: set[str] = set()
        self._weights = [u.weight for u in self.users]

    @classmethod
    def from_settings(cls, settings: "Settings", seed: int, stream: str) -> "EventGenerator":
        """The generator of one stream, configured by ``generator``, ``schema`` and ``validation``."""
        return cls(settings["generator"], settings["schema"]["enums"], seed, stream,
                   settings["validation"]["viewports"])

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """Yield exactly ``count`` events (the last session may be cut short)."""
        emitted = 0
        while emitted < count:
            for event in self._session():
                yield event
                emitted += 1
                if emitted == count:
                    return

    # -- one session ----------------------------------------------------------------------
    def _session(self) -> Iterator[dict[str, Any]]:
        rng = self.rng
        user = rng.choices(self.users, weights=self._weights)[0]
        returning = user.user_id in self.seen_users
        self.seen_users.add(user.user_id)
        session_id = _uuid(rng)
        self.clock += timedelta(seconds=rng.expovariate(1 / 20))
        t = self.clock
        cart_adds = product_views = 0
        page = "/" if rng.random() < 0.6 else "/search"
        for _ in range(rng.randint(1, 12)):
            for action in self._page_actions(page):
                if action == "add_to_cart":
                    cart_adds += 1
                yield self._event(user, session_id, page, action, t)
                t += timedelta(seconds=rng.uniform(2, 90))
            if page.startswith("/product/"):
                product_views += 1
            page = self._next_page(page)
        if rng.random() < purchase_probability(cart_adds, product_views, user.device_type, returning):
            yield self._event(user, session_id, "/checkout", "purchase", t)

    def _page_actions(self, page: str) -> list[str]:
        rng = self.rng
        actions = ["view"]
        actions += ["scroll"] * rng.choices([0, 1, 2], weights=[5, 3, 1])[0]
        actions += ["click"] * rng.choices([0, 1, 2], weights=[4, 4, 1])[0]
        if page.startswith("/product/") and rng.random() < 0.25:
            actions.append("add_to_cart")
        return actions

    def _next_page(self, page: str) -> str:
        rng = self.rng
        category = rng.choice(self.categories)
        options = {
            "/": ["/search", f"/category/{category}", f"/category/{category}"],
            "/search": [f"/product/{category}-{rng.randrange(self.products)}", f"/category/{category}"],
            "/cart": ["/", f"/category/{category}"],
        }.get(page)
        if options is None:  # category or product page
            options = [f"/product/{category}-{rng.randrange(self.products)}"] * 3 + ["/cart", "/search"]
        return rng.choice(options)

    def _event(self, user: User, session_id: str, page: str, action: str, t: datetime) -> dict[str, Any]:
        x = y = NO_COORDINATE
        if action == "click":
            width, height = self.viewports[user.device_type]
            x, y = self.rng.randrange(width), self.rng.randrange(height)
        return {
            "event_id": _uuid(self.rng),
            "user_id": user.user_id,
            "page_url": self.site + page,
            "timestamp": t.isoformat(timespec="milliseconds"),
            "action_type": action,
            "browser": user.browser,
            "timezone": user.timezone,
            "device_type": user.device_type,
            "click_coordinates_x": x,
            "click_coordinates_y": y,
            "session_id": session_id,
            "ip_address": user.ip_address,
        }
