"""The `settings:` of a ThriveStack destination, its request limits and its retry defaults."""

from __future__ import annotations

import msgspec

from gateway.adapter import BatchLimits

from .fields import PAGE_VISIT

DEDUPES = False  # no messageId/insert_id in ThriveStack's API: a retry may duplicate
# Small, because every retry after a timeout or 5xx may duplicate: typically 5-8 tries in
# about two minutes (longer when a 429's Retry-After asks), then the dead-letter queue, which
# replays. ThriveStack's own backend guidance is fire-and-forget (vendor-apis.md 4.3); a
# destination's `retry:` block overrides any of these.
DEFAULT_RETRY = {"max_attempts": 5, "max_age_s": 120.0, "backoff_base_s": 5.0, "backoff_max_s": 60.0}


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    api_key: str
    base_url: str = "https://api.app.thrivestack.ai/api"  # the docs name no regional host
    page_event_name: str = PAGE_VISIT
    screen_event_name: str = "screen_viewed"
    b2b_event_names: bool = True  # "Signed Up" -> "signed_up", ... (B2B_EVENTS)
    # ThriveStack publishes no limits: conservative, as vendor-apis.md 4.1 suggests.
    max_request_events: int = 100
    max_request_bytes: int = 500_000

    def __post_init__(self) -> None:
        if not self.api_key.strip():
            raise ValueError("api_key: must not be empty")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url: must start with http:// or https://")
        if not (self.page_event_name.strip() and self.screen_event_name.strip()):
            raise ValueError("page_event_name, screen_event_name: must not be empty")
        if not 1 <= self.max_request_events <= 1000:
            raise ValueError("max_request_events: from 1 to 1000")
        if not 1024 <= self.max_request_bytes <= 2_000_000:
            raise ValueError("max_request_bytes: from 1024 to 2000000")


def batch_limits(settings: Settings) -> BatchLimits:
    return BatchLimits(max_events=settings.max_request_events, max_bytes=settings.max_request_bytes)
