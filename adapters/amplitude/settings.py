"""The `settings:` of an Amplitude destination, and the request limits they imply."""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.adapter import BatchLimits

DEFAULT_BASE_URL = "https://api2.amplitude.com"
USERMAP_URL = "https://api.amplitude.com/usermap"  # the User Mapping API's own host
# Event names of page and screen calls ({name}, {category} filled in); the sample SDK calls use them too.
DEFAULT_PAGE_EVENT_NAME = "Viewed {name} Page"
DEFAULT_SCREEN_EVENT_NAME = "Viewed {name} Screen"
DEFAULT_GROUP_TYPE = "company"  # the Amplitude group type of a Segment-style group call


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    api_key: str
    base_url: str = DEFAULT_BASE_URL  # EU projects: https://api.eu.amplitude.com
    endpoint: Literal["httpapi", "batch"] = "httpapi"  # /2/httpapi, or /batch (20 MB, 1,000 eps per id)
    min_id_length: int = 1  # sent as options.min_id_length: Amplitude's default 5 strips short ids
    page_event_name: str = DEFAULT_PAGE_EVENT_NAME
    unnamed_page_event_name: str = "Loaded a Page"
    screen_event_name: str = DEFAULT_SCREEN_EVENT_NAME
    unnamed_screen_event_name: str = "Loaded a Screen"
    group_type: str = DEFAULT_GROUP_TYPE
    use_usermap: bool = False  # alias -> /usermap (needs Amplitude's Portfolio add-on)
    usermap_url: str | None = None  # default: Amplitude's, or {base_url}/usermap for another host
    revenue_from_properties: bool = True  # lift properties.revenue & co. for non-Amplitude events

    def __post_init__(self) -> None:
        if not self.api_key.strip():
            raise ValueError("api_key: must not be empty")
        for name in ("base_url", "usermap_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name}: must start with http:// or https://")
        if self.min_id_length < 1:
            raise ValueError("min_id_length: must be at least 1")
        if not self.group_type:
            raise ValueError("group_type: must not be empty")
        for name in ("page_event_name", "unnamed_page_event_name", "screen_event_name", "unnamed_screen_event_name"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name}: must not be empty")


def batch_limits(settings: Settings) -> BatchLimits:
    """2,000 events a request either way; under 1 MB for /2/httpapi, 20 MB for /batch."""
    max_bytes = 1_000_000 if settings.endpoint == "httpapi" else 20_000_000
    return BatchLimits(max_events=2000, max_bytes=max_bytes)


def usermap_url(settings: Settings) -> str:
    if settings.usermap_url:
        return settings.usermap_url
    base = settings.base_url.rstrip("/")
    return USERMAP_URL if base == DEFAULT_BASE_URL else base + "/usermap"
