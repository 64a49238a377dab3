"""Seeded Segment-spec bodies for the load: 1.25 KB identify calls and 100-event batches.

Every messageId ends in PLACEHOLDER, which the load driver replaces per request with a token
unique to the run, the wrk thread and the request (``token()``), so no two requests of a run
(nor of two runs) share a messageId and the gateway's dedupe never turns the run into no-ops.
Pool files hold one body per line.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec

PLACEHOLDER = "~" * 14  # replaced by token(): 4 run-tag + 2 thread + 8 counter hex chars
SINGLES = 256  # distinct identify bodies in the pool
BATCHES = 16  # distinct batch bodies in the pool
BATCH_SIZE = 100
MIX = (("track", 0.7), ("page", 0.2), ("identify", 0.1))

_BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
)
_EVENTS = ("Order Completed", "Product Viewed", "Signed In", "Checkout Started", "Invite Sent", "Trial Started")
_PAGES = ("/pricing", "/docs/getting-started", "/blog/how-we-scaled-ingest", "/account/settings", "/checkout")


def token(tag: str, thread: int, counter: int) -> str:
    """What replaces PLACEHOLDER; the Lua script builds the same string."""
    return f"{tag}{thread:02x}{counter:08x}"


def _time(rng: random.Random, now: datetime) -> str:
    moment = now - timedelta(seconds=rng.uniform(0, 600))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _context(rng: random.Random, page: str) -> dict:
    return {
        "library": {"name": "analytics.js", "version": "next-1.74.0"},
        "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
        "userAgent": rng.choice(_BROWSERS),
        "page": {
            "path": page,
            "referrer": "https://www.google.com/",
            "search": "?utm_source=newsletter",
            "title": f"{page.strip('/').replace('/', ' ').title()} | Example",
            "url": f"https://app.example.com{page}?utm_source=newsletter",
        },
        "campaign": {
            "name": "autumn-launch", "source": "newsletter", "medium": "email", "term": "gateway", "content": "cta-2"
        },
        "userAgentData": {
            "brands": [{"brand": "Chromium", "version": "131"}, {"brand": "Google Chrome", "version": "131"}],
            "mobile": False,
            "platform": "macOS",
        },
        "screen": {"width": 1920, "height": 1080, "density": 2},
        "instanceId": str(uuid.UUID(int=rng.getrandbits(128))),
        "locale": rng.choice(("en-US", "de-DE", "fr-FR")),
        "timezone": rng.choice(("Europe/Berlin", "America/New_York", "Asia/Tokyo")),
    }


def event(kind: str, rng: random.Random, now: datetime) -> dict:
    user = rng.randrange(1_000_000)
    page = rng.choice(_PAGES)
    common = {
        "type": kind,
        "messageId": f"{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}-{PLACEHOLDER}",
        "userId": f"user-{user}",
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp": _time(rng, now),
        "context": _context(rng, page),
    }
    if kind == "identify":
        common["traits"] = {
            "email": f"user{user}@example.com",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "plan": rng.choice(("free", "team", "enterprise")),
            "company": {"name": "Example Ltd", "id": f"co-{user % 977}", "employee_count": rng.randrange(5, 5000)},
            "createdAt": _time(rng, now),
            "logins": rng.randrange(1, 400),
        }
    elif kind == "track":
        common["event"] = rng.choice(_EVENTS)
        common["properties"] = {
            "order_id": f"o-{rng.getrandbits(40):x}",
            "revenue": round(rng.uniform(5, 500), 2),
            "currency": "USD",
            "products": rng.randrange(1, 9),
            "coupon": rng.choice((None, "AUTUMN10")),
            "category": rng.choice(("books", "tools", "games")),
            "shipping": "express",
            "tax": round(rng.uniform(0, 40), 2),
            "discount": 0,
            "affiliation": "web-store",
        }
    else:
        common["name"] = page.strip("/") or "home"
        common["properties"] = {"path": page, "title": "Example", "url": f"https://app.example.com{page}"}
    return common


def identify_body(rng: random.Random, now: datetime) -> bytes:
    body = event("identify", rng, now)
    body["sentAt"] = _time(rng, now)
    return msgspec.json.encode(body)


def batch_body(rng: random.Random, now: datetime, size: int = BATCH_SIZE) -> bytes:
    kinds = [kind for kind, share in MIX for _ in range(round(size * share))]
    rng.shuffle(kinds)
    return msgspec.json.encode({"batch": [event(k, rng, now) for k in kinds], "sentAt": _time(rng, now)})


def write_pools(directory: Path, seed: int = 7) -> dict[str, Path]:
    """Write identify.ndjson and batch.ndjson into ``directory``; returns {payload: path}."""
    rng, now = random.Random(seed), datetime.now(timezone.utc)
    directory.mkdir(parents=True, exist_ok=True)
    pools = {
        "single": [identify_body(rng, now) for _ in range(SINGLES)],
        "batch": [batch_body(rng, now) for _ in range(BATCHES)],
    }
    paths = {}
    for name, bodies in pools.items():
        paths[name] = directory / f"{name}.ndjson"
        paths[name].write_bytes(b"\n".join(bodies) + b"\n")
    return paths


def pool_stats(path: Path) -> dict[str, float]:
    bodies = path.read_bytes().splitlines()
    return {"bodies": len(bodies), "avg_bytes": sum(map(len, bodies)) / len(bodies)}
