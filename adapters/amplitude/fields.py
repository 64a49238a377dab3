"""Amplitude's event fields both halves share: their JSON types, their canonical homes, the checks."""

from __future__ import annotations

from typing import Any

import msgspec

encode_json = msgspec.json.Encoder().encode
decode_json_dict = msgspec.json.Decoder(dict).decode
decode_json = msgspec.json.Decoder().decode

IDENTIFY = "$identify"
GROUP_IDENTIFY = "$groupidentify"
ORIGIN = "from_amplitude"  # the mark, in integrations.Amplitude, of an event decoded here
EXTRAS = "Amplitude"  # the integrations key that keeps what the Spec cannot hold
INTEGRATION_NAMES = ("Amplitude", "Actions Amplitude")
DEFAULT_MIN_ID_LENGTH = 5  # Amplitude's, when a request has no options.min_id_length

# ---- Amplitude's event fields (HTTP V2 docs, amplitude-analytics 1.3.0 EVENT_KEY_MAPPING) ----

STRINGS = frozenset((
    "user_id", "device_id", "event_type", "app_version", "platform", "os_name", "os_version",
    "device_brand", "device_manufacturer", "device_model", "carrier", "country", "region", "city",
    "dma", "language", "productId", "revenueType", "currency", "ip", "idfa", "idfv", "adid",
    "android_id", "android_app_set_id", "insert_id", "library", "partner_id", "version_name",
    "user_agent", "start_version",
))
NUMBERS = frozenset(("price", "revenue", "location_lat", "location_lng"))
_INTEGERS = frozenset(("time", "quantity", "event_id", "session_id"))
_OBJECTS = frozenset(("event_properties", "user_properties", "groups", "group_properties", "plan", "ingestion_metadata"))
_BOOLEANS = frozenset(("paying", "$skip_user_properties_sync"))
_MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31: past it no ISO 8601 time

# Amplitude field -> where it lives in the canonical `context` (and back).
CONTEXT = {
    "user_agent": ("userAgent",),
    "language": ("locale",),
    "os_name": ("os", "name"),
    "os_version": ("os", "version"),
    "device_brand": ("device", "brand"),
    "device_manufacturer": ("device", "manufacturer"),
    "device_model": ("device", "model"),
    "platform": ("device", "type"),
    "carrier": ("network", "carrier"),
    "country": ("location", "country"),
    "region": ("location", "region"),
    "city": ("location", "city"),
    "dma": ("location", "dma"),
    "location_lat": ("location", "latitude"),
    "location_lng": ("location", "longitude"),
    "app_version": ("app", "version"),
}


class Invalid(Exception):
    """A field Amplitude would refuse: `code` is the Reject code, `field` the one to blame."""

    def __init__(self, code: str, field: str, message: str):
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


def check_types(fields: dict) -> None:
    """Raises Invalid for the first known field of the wrong JSON type, or a `time` out of range."""
    for name, value in fields.items():
        if name in STRINGS:
            ok = isinstance(value, str)
        elif name in _INTEGERS:
            ok = type(value) is int
        elif name in NUMBERS:
            ok = type(value) in (int, float)
        elif name in _OBJECTS:
            ok = isinstance(value, dict)
        elif name in _BOOLEANS:
            ok = isinstance(value, bool)
        else:
            continue
        if not ok:
            raise Invalid("invalid_field", name, f"{name}: wrong type {type(value).__name__}")
    when = fields.get("time")
    if when is not None and not 0 <= when <= _MAX_TIME_MS:
        raise Invalid("invalid_field", "time", "time: out of range (milliseconds since the epoch)")


def group_id(groups: Any) -> str | None:
    """The first group value: `groups` maps a type to a value or a list of values."""
    if isinstance(groups, dict):
        for value in groups.values():
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, str) and value:
                return value
        return None
    if isinstance(groups, list):  # a group_value given as a list
        return group_id({"": groups})
    return groups if isinstance(groups, str) and groups else None
