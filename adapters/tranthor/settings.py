"""The `settings:` of a Tranthor destination, the request limits and the authorization they imply."""

from __future__ import annotations

import re

import msgspec

from gateway.adapter import BatchLimits

MAX_EVENTS = 100  # Dittofeed's batchChunkSize: one insert per request
MAX_BODY_BYTES = 5 * 1024 * 1024  # Dittofeed's default apiBodyLimit
_ENVELOPE = len(b'{"batch":[]}')
_SCHEME = re.compile(r"^(basic|bearer) \S", re.IGNORECASE)


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    write_key: str  # the token; a value that already says "Basic <token>" is sent as it is
    base_url: str = "https://app.tranthor.com"  # self-hosted Dittofeed: its API's origin

    def __post_init__(self) -> None:
        if not self.write_key.strip():
            raise ValueError("write_key: must not be empty")
        if any(c in self.write_key for c in "\r\n"):
            raise ValueError("write_key: must be one line")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url: must start with http:// or https://")


def batch_limits(settings: Settings) -> BatchLimits:
    return BatchLimits(MAX_EVENTS, MAX_BODY_BYTES, max_event_bytes=MAX_BODY_BYTES - _ENVELOPE)


def authorization(settings: Settings) -> str:
    key = settings.write_key.strip()
    return key if _SCHEME.match(key) else f"Basic {key}"
