"""The canonical event: Segment's Spec as a msgspec tagged union, camelCase on the wire.

Free-form objects (`properties`, `traits`, `context`, `integrations`) are kept as
`msgspec.Raw` JSON: ingest and delivery pass them through without re-parsing, and code
that needs their contents calls `obj()` / `raw()`. An absent object is `NO_JSON`
(empty bytes), which is omitted when encoded; a JSON `null` reads as empty too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec

NO_JSON = msgspec.Raw()

_decode_object = msgspec.json.Decoder(dict).decode


class BaseEvent(
    msgspec.Struct, tag_field="type", rename="camel", omit_defaults=True, kw_only=True, gc=False
):
    message_id: str | None = None  # None only until ingest fills it in
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: str | None = None  # event time, skew-corrected (ISO 8601 UTC, ms, "Z")
    original_timestamp: str | None = None  # the client's clock at call time
    sent_at: str | None = None  # the client's clock at send time
    received_at: str | None = None  # trackgate's clock at receipt
    context: msgspec.Raw = NO_JSON
    integrations: msgspec.Raw = NO_JSON
    source: str | None = None  # name of the configured source it came through


class Identify(BaseEvent, tag="identify"):
    traits: msgspec.Raw = NO_JSON


class Track(BaseEvent, tag="track"):
    event: str | None = None
    properties: msgspec.Raw = NO_JSON


class Page(BaseEvent, tag="page"):
    name: str | None = None
    category: str | None = None
    properties: msgspec.Raw = NO_JSON


class Screen(BaseEvent, tag="screen"):
    name: str | None = None
    category: str | None = None
    properties: msgspec.Raw = NO_JSON


class Group(BaseEvent, tag="group"):
    group_id: str | None = None
    traits: msgspec.Raw = NO_JSON


class Alias(BaseEvent, tag="alias"):
    previous_id: str | None = None


Event = Identify | Track | Page | Screen | Group | Alias

EVENT_TYPES: dict[str, type[BaseEvent]] = {
    "identify": Identify,
    "track": Track,
    "page": Page,
    "screen": Screen,
    "group": Group,
    "alias": Alias,
}

encode_event = msgspec.json.Encoder().encode
decode_event = msgspec.json.Decoder(Event).decode
decode_events = msgspec.json.Decoder(list[Event]).decode
_encode = msgspec.json.Encoder().encode


def type_of(event: BaseEvent) -> str:
    """The event's Spec type name ("track", "identify", ...)."""
    return event.__struct_config__.tag  # type: ignore[return-value]


def is_empty(value: msgspec.Raw) -> bool:
    return not value or bytes(value) == b"null"


def obj(value: msgspec.Raw) -> dict:
    """The JSON object in a Raw field, or {} when absent or null."""
    if is_empty(value):
        return {}
    return _decode_object(value)


def raw(value: dict | None) -> msgspec.Raw:
    """A Raw field holding `value` (NO_JSON for None)."""
    if value is None:
        return NO_JSON
    return msgspec.Raw(_encode(value))


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a "Z": the one form trackgate stores."""
    m = moment.astimezone(timezone.utc)  # f-string: about 4x faster than strftime
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond // 1000:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)
_MILLISECOND = timedelta(milliseconds=1)
# Caches of whole seconds, both ways: events in a request sit within a few seconds.
_prefixes: dict[int, str] = {}  # epoch second -> "YYYY-MM-DDTHH:MM:SS"
_seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" (validated) -> epoch second
_CACHE_MAX = 65536


def _second_of(prefix: str) -> int:
    """Epoch second of a "YYYY-MM-DDTHH:MM:SS" UTC prefix; ValueError if it is no time."""
    second = _seconds.get(prefix)
    if second is None:
        if len(prefix) != 19 or prefix[10] != "T" or not prefix.isascii():
            raise ValueError(f"not an ISO 8601 time: {prefix!r}")
        second = (datetime.fromisoformat(prefix).replace(tzinfo=timezone.utc) - _EPOCH) // _SECOND
        if len(_seconds) > _CACHE_MAX:
            _seconds.clear()
        _seconds[prefix] = second
    return second


_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))
# Canonical times canonical_time passed lately -> their epoch ms: ingest checks each event's
# time, then moves it by the request's clock skew, and the second look is then one probe.
_epoch_ms_of: dict[str, int] = {}
_MILLI_VALUES = {f"{n:03d}": n for n in range(1000)}


def format_ms(epoch_ms: int) -> str:
    """format_time for epoch milliseconds, without building a datetime (the hot path)."""
    second = epoch_ms // 1000
    prefix = _prefixes.get(second)
    if prefix is None:
        if len(_prefixes) > _CACHE_MAX:
            _prefixes.clear()
        prefix = _prefixes[second] = format_time(datetime.fromtimestamp(second, timezone.utc))[:19]
    return prefix + _MILLIS[epoch_ms - second * 1000]


def canonical_time(text: str) -> str:
    """Any ISO 8601 time as trackgate's one form (UTC, ms, "Z"); ValueError if it is none.
    UTC times ("Z" or "+00:00", as SDKs send them) take a fast path without a datetime."""
    if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[10] == "T":
        milli = _MILLI_VALUES.get(text[20:23])
        if milli is not None:  # already canonical: validate it (cached per second), note its ms
            if len(_epoch_ms_of) > _CACHE_MAX:
                _epoch_ms_of.clear()
            _epoch_ms_of[text] = _second_of(text[:19]) * 1000 + milli
            return text
    end = len(text) - 1 if text[-1:] == "Z" else len(text) - 6 if text.endswith("+00:00") else -1
    if text[10:11] != "T":
        end = -1
    if end == 19:
        _second_of(text[:19])
        return text[:19] + ".000Z"
    if end > 20 and text[19] == ".":
        fraction = text[20:end]
        if fraction.isascii() and fraction.isdigit():
            _second_of(text[:19])
            return f"{text[:19]}.{fraction[:3]:0<3}Z"
    return format_time(parse_time(text))


def epoch_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time (fast for the canonical form)."""
    known = _epoch_ms_of.get(text)
    if known is not None:
        return known
    if len(text) == 24 and text[23] == "Z" and text[19] == ".":
        milli = _MILLI_VALUES.get(text[20:23])
        if milli is not None and text[10] == "T":
            return _second_of(text[:19]) * 1000 + milli
    return (parse_time(text) - _EPOCH) // _MILLISECOND


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time ("Z" or an offset; 0-6 fraction digits). Naive means UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment
