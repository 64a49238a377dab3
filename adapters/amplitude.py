"""Amplitude both ways: the dialect Amplitude's SDKs post in, and Amplitude as a destination.

Source half: `POST /2/httpapi` and `/batch` (JSON `{api_key, events, options,
client_upload_time}`), `POST /identify` and `/groupidentify` (form-encoded, or multipart, `api_key`
+ `identification`: one JSON object or an array; `options` too). The key is the body's `api_key`.
A request with any invalid event is refused whole (`Decoded.atomic`) with Amplitude's 400 naming
the events by index (`events_with_missing_fields`, `events_with_invalid_fields`,
`events_with_invalid_id_lengths`), so an SDK drops those and resends the rest. Amplitude's rules:
`event_type` required; `user_id` or `device_id` (ids shorter than `options.min_id_length`,
default 5, are removed first; placeholder ids like "null" are invalid) except on
`$groupidentify`; `time` an integer in ms; every known field of its documented JSON type. More
events than the source's `max_events` answer 413 (Amplitude's SDKs halve and resend). The SDKs
read the body's `code`, so every reply carries one equal to the HTTP status; an unknown key is
Amplitude's `400 {"error": "Invalid API key: ..."}` (the SDKs then drop the batch).
`/identify` and `/groupidentify` answer `200 success` as Amplitude does.

Mapping in (Amplitude -> canonical), after vendor-apis.md section 3.2:
- `$identify` -> identify, `$groupidentify` (and each /groupidentify item) -> group with
  `groupId` = the first value of `groups`, every other event -> track (`event_properties` ->
  `properties`). /identify items are identifies.
- `user_id` -> `userId`, `device_id` -> `anonymousId`, `insert_id` -> `messageId`; without one,
  `messageId` is derived: `amp-` + a SHA-256 digest of (api_key, device_id, user_id,
  event_type, time, event_id, and the property objects of an `$identify`/`$groupidentify`), so
  an SDK resend deduplicates. Without `time` (and for form items) the request's receive time and
  the item's index join the digest: Amplitude cannot deduplicate those either, and repeated
  calls (an `$add`, say) must not collapse into one.
- `time` -> `originalTimestamp`; `client_upload_time` -> `sentAt`, so the engine corrects skew.
- `user_properties` / `group_properties`: `$set`, `$setOnce` and plain keys become `traits`
  (`context.traits` on a track); every other operation (`$add`, `$append`, `$unset`,
  `$setOnce` again, ...) is kept as is in `integrations.Amplitude.user_properties` /
  `.group_properties`.
- Context: `ip` -> `context.ip` (`"$remote"` -> the client's address), `user_agent` ->
  `userAgent`, `language` -> `locale`, `os_*` -> `os.*`, `device_brand/manufacturer/model` ->
  `device.*`, `platform` -> `device.type`, `carrier` -> `network.carrier`,
  `country/region/city/dma/location_lat/location_lng` -> `location.*`, `app_version` ->
  `app.version`, `library` "name/version" -> `library.{name,version}`, `groups` -> also
  `context.groupId` (its first value).
- Everything else (`groups`, `session_id`, `event_id`, revenue fields, ad ids, `plan`,
  `partner_id`, unknown keys, an identify's `event_properties`, ...) is kept verbatim in
  `integrations.Amplitude`, which also carries `"from_amplitude": true`: Amplitude out then
  takes those fields from there only (it never lifts revenue out of properties for them).

Mapping out (canonical -> Amplitude): the inverse of the above, so Amplitude -> trackgate ->
Amplitude gives back every field the SDK sent, plus: `messageId` -> `insert_id`, `timestamp`
(skew-corrected) -> `time` in ms, `context.device.id` or else `anonymousId` -> `device_id`.
identify -> `$identify` with `user_properties: {$set: traits, ...kept operations}`; group ->
`$identify` with `groups: {<type>: groupId}` (and `user_properties.$set` of the same) plus a
form POST of the group's traits to `/groupidentify`; a group without a user, or one that came
from Amplitude, -> a `$groupidentify` event. page/screen -> events named by the templates in
the settings (`{name}`, `{category}`), name and category added to the properties. alias ->
skipped and counted (`skipped_alias_unsupported`) unless `use_usermap`, then `/usermap`. Events
from other sources also get revenue fields lifted from `properties` (`revenue`, `price`,
`quantity`, `currency`, `productId`/`product_id`, `revenueType`/`revenue_type`; they stay in
`event_properties` too), `session_id` from `integrations.Amplitude`, and
`context.device.advertisingId` as `idfa` (iOS) or `adid` (Android). Requests stay within
Amplitude's limits: 2,000 events and 1 MB (`/batch`: 20 MB); /groupidentify 1,024 items, 1 MB.

Responses, per event (vendor-apis.md section 3.3): success needs a 2xx and a body `code` 2xx
(or no JSON body). 400 naming events: those are dead, the others `resend`; 400 with
`missing_field` or an invalid API key: all dead. 413: split (one event: dead). 429:
`throttled_events` retry after 30 s (or a Retry-After, if ever sent), those whose user or device is over the
daily quota are dead, the others `resend`; a 429 naming nothing retries all. 5xx and network
errors: the engine's one retry policy.

Lossy conversions, in (Amplitude -> canonical):
- A JSON `null` field reads as absent; ids shorter than `min_id_length` are removed (as
  Amplitude does); `"$remote"` becomes the client's address (dropped when it is unknown).
- A key both in `$set` and `$setOnce` with the same value comes back only under `$setOnce`;
  plain `user_properties` keys of an `$identify` come back under `$set` (Amplitude applies both
  alike), and so do a track's `$set` keys when no other operation is kept.
- `$setOnce` values are plain traits to other destinations (which set them every time), and
  the browser SDK's `[Amplitude] Page Viewed` stays a track, not a Spec page.
- `/identify` items become identifies and go out as `$identify` events (they count as events
  there); `/groupidentify` items go out as `$groupidentify` events.
- GET forms of /identify and /groupidentify, and the legacy Amplitude-JS endpoint, are not served.

Lossy conversions, out (canonical -> Amplitude):
- Dropped: `sentAt`, `receivedAt`, trackgate's `source`, `integrations` flags, `context.page`,
  `context.campaign`, `context.groupId` of events from other sources, context keys without an
  Amplitude field, a page's/screen's type (they are events).
- Strings inside properties are cut to 1,024 characters (Amplitude's limit, as its SDKs do), an
  array inside an array and anything nested deeper than 40 levels is sent as its JSON text.
- Amplitude rewrites `language` tags to names ("en-US" -> "English") on its side.
- A `session_id` from another source that is no integer (nor ends in digits) is dropped.
- alias needs the Portfolio add-on (`/usermap`); without `use_usermap` it is skipped and counted.
"""

from __future__ import annotations

import hashlib
import math
import re
from email import policy
from email.parser import BytesParser
from typing import Any, Literal
from urllib.parse import parse_qsl, quote_plus, urlsplit

import msgspec

from gateway.adapter import (
    NO_JSON,
    Alias,
    BatchLimits,
    Decoded,
    Group,
    Identify,
    InboundRequest,
    IngestError,
    OutboundRequest,
    Reject,
    Reply,
    Response,
    Screen,
    SourceLimits,
    Track,
    Verdict,
    canonical_time,
    epoch_ms,
    format_ms,
    http_verdict,
    obj,
    pack_json_batches,
    parse_retry_after,
    raw,
)

_encode = msgspec.json.Encoder().encode
_decode_dict = msgspec.json.Decoder(dict).decode
_decode_any = msgspec.json.Decoder().decode

# ---- Amplitude's event fields (HTTP V2 docs, amplitude-analytics 1.3.0 EVENT_KEY_MAPPING) ----

_STRINGS = frozenset((
    "user_id", "device_id", "event_type", "app_version", "platform", "os_name", "os_version",
    "device_brand", "device_manufacturer", "device_model", "carrier", "country", "region", "city",
    "dma", "language", "productId", "revenueType", "currency", "ip", "idfa", "idfv", "adid",
    "android_id", "android_app_set_id", "insert_id", "library", "partner_id", "version_name",
    "user_agent", "start_version",
))
_NUMBERS = frozenset(("price", "revenue", "location_lat", "location_lng"))
_INTEGERS = frozenset(("time", "quantity", "event_id", "session_id"))
_OBJECTS = frozenset(("event_properties", "user_properties", "groups", "group_properties", "plan", "ingestion_metadata"))
_BOOLEANS = frozenset(("paying", "$skip_user_properties_sync"))
# Amplitude answers 400 for these ids (HTTP V2 docs, "Invalid IDs that result in a 400 error").
_INVALID_IDS = frozenset((
    "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
    "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
))
_MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31: past it no ISO 8601 time
DEFAULT_MIN_ID_LENGTH = 5  # Amplitude's, when a request has no options.min_id_length

# Amplitude field -> where it lives in the canonical `context` (and back).
_CONTEXT = {
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
IDENTIFY = "$identify"
GROUP_IDENTIFY = "$groupidentify"
ORIGIN = "from_amplitude"  # the mark, in integrations.Amplitude, of an event decoded here
_EXTRAS = "Amplitude"

# ---- source half -------------------------------------------------------------------

_EVENT_PATHS = ("/2/httpapi", "/batch")
_FORM_PATHS = ("/identify", "/groupidentify")
ROUTES = _EVENT_PATHS + _FORM_PATHS


class _Envelope(msgspec.Struct):
    api_key: Any = None
    events: msgspec.Raw = NO_JSON
    options: Any = None
    client_upload_time: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode


class _Invalid(Exception):
    def __init__(self, code: str, field: str, message: str):
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


class _Request(msgspec.Struct):
    """What every item of one request shares."""

    key: str
    path: str
    min_id_length: int
    sent_at: str | None
    client_ip: str | None
    received_at: str


def decode(request: InboundRequest, limits: SourceLimits) -> Decoded:
    """An Amplitude request -> canonical events, or rejects naming each invalid item."""
    path = request.path.rstrip("/") or "/"
    if path not in ROUTES:
        raise IngestError(404, "not_found", f"no Amplitude endpoint at {request.path}")
    if not request.body.strip():
        raise IngestError(400, "missing_body", "the request has no body")
    if path in _EVENT_PATHS:
        key, items, shared = _event_request(request, path)
    else:
        key, items, shared = _form_request(request, path)
    if len(items) > limits.max_events:
        raise IngestError(413, "too_many_events", f"{len(items)} events; at most {limits.max_events}")
    events, rejects = [], []
    for index, item in enumerate(items):
        try:
            if len(item) > limits.max_event_bytes:
                raise _Invalid("event_too_large", "event", f"event is {len(item)} bytes; at most {limits.max_event_bytes}")
            events.append(_item_event(item, index, shared))
        except _Invalid as problem:
            rejects.append(Reject(index, problem.code, problem.message, bytes(item), problem.field))
    if rejects:
        return Decoded(key, [], rejects, atomic=True)
    return Decoded(key, events)


def _event_request(request: InboundRequest, path: str) -> tuple[str, list, _Request]:
    try:
        envelope = _decode_envelope(request.body)
    except msgspec.ValidationError:
        raise IngestError(400, "invalid_json", "body: must be a JSON object") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise IngestError(400, "invalid_json", "body: nested too deeply") from None
    key = _api_key(envelope.api_key)
    if not envelope.events or bytes(envelope.events) == b"null":
        raise IngestError(400, "missing_events", "events: required")
    try:
        items = _decode_items(envelope.events)
    except msgspec.ValidationError:
        raise IngestError(400, "invalid_events", "events: must be a list of events") from None
    sent_at = _sent_at(envelope.client_upload_time)
    shared = _Request(key, path, _min_id_length(envelope.options), sent_at, request.client_ip, request.received_at)
    return key, items, shared


def _api_key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise IngestError(400, "missing_api_key", "api_key: required")
    return value


def _min_id_length(options: Any) -> int:
    if options is None:
        return DEFAULT_MIN_ID_LENGTH
    length = options.get("min_id_length") if isinstance(options, dict) else False
    if length is None:
        return DEFAULT_MIN_ID_LENGTH
    if type(length) is not int or length < 1:
        raise IngestError(400, "invalid_options", "options.min_id_length: must be a positive integer")
    return length


def _sent_at(value: Any) -> str | None:
    """The TS SDKs' request-level `client_upload_time`; one that is no ISO time is ignored."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return canonical_time(value)
    except (ValueError, OverflowError):
        return None


def _form_request(request: InboundRequest, path: str) -> tuple[str, list, _Request]:
    fields = _form_fields(request)
    key = _api_key(fields.get("api_key"))
    text = fields.get("identification")
    if not text:
        raise IngestError(400, "missing_identification", "identification: required")
    try:
        found = _decode_any(text) if isinstance(text, (str, bytes)) else text
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise IngestError(400, "invalid_json", "identification: not valid JSON") from None
    listed = found if isinstance(found, list) else [found]
    items = [_encode(item) for item in listed]
    options = fields.get("options")
    if isinstance(options, str):
        try:
            options = _decode_any(options)
        except msgspec.DecodeError:
            raise IngestError(400, "invalid_options", "options: not valid JSON") from None
    shared = _Request(key, path, _min_id_length(options), None, request.client_ip, request.received_at)
    return key, items, shared


def _form_fields(request: InboundRequest) -> dict[str, Any]:
    """The fields of a form body: urlencoded, multipart, or (leniently) a JSON object."""
    body = request.body
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/"):
        return _multipart(body, content_type)
    if body.lstrip()[:1] == b"{":
        try:
            fields = _decode_dict(body)
        except (msgspec.DecodeError, RecursionError):
            raise IngestError(400, "invalid_json", "body is not valid JSON") from None
        return {k: v for k, v in fields.items() if isinstance(v, (str, dict, list))}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise IngestError(400, "invalid_form", "body: not a valid form") from None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _multipart(body: bytes, content_type: str) -> dict[str, Any]:
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise IngestError(400, "invalid_form", "body: not a valid multipart form")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields.setdefault(name, payload.decode("utf-8", "replace"))
    return fields


def _item_event(item: bytes, index: int, shared: _Request):
    try:
        fields = _decode_dict(item)
    except msgspec.ValidationError:
        raise _Invalid("invalid_event", "event", "event: must be a JSON object") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _Invalid("invalid_event", "event", "event: not valid JSON") from None
    fields = {k: v for k, v in fields.items() if v is not None}
    if shared.path == "/identify":
        fields["event_type"] = IDENTIFY
    elif shared.path == "/groupidentify":
        fields = _group_item(fields)
    _check_types(fields)
    event_type = fields.get("event_type")
    if not event_type:
        raise _Invalid("missing_field", "event_type", "event_type: required")
    _check_ids(fields, shared.min_id_length, event_type == GROUP_IDENTIFY)
    return _canonical(fields, _message_id(fields, item, index, shared), shared)


def _group_item(fields: dict) -> dict:
    """A /groupidentify item as the `$groupidentify` event that means the same."""
    group_type, group_value = fields.pop("group_type", None), fields.pop("group_value", None)
    for name, value in (("group_type", group_type), ("group_value", group_value)):
        if value is None or value == "":
            raise _Invalid("missing_field", name, f"{name}: required")
    if not isinstance(group_type, str) or _group_id(group_value) is None:
        raise _Invalid("invalid_field", "group_type" if not isinstance(group_type, str) else "group_value",
                       "group_type and group_value: must be strings")
    return {**fields, "event_type": GROUP_IDENTIFY, "groups": {group_type: group_value}}


def _check_types(fields: dict) -> None:
    for name, value in fields.items():
        if name in _STRINGS:
            ok = isinstance(value, str)
        elif name in _INTEGERS:
            ok = type(value) is int
        elif name in _NUMBERS:
            ok = type(value) in (int, float)
        elif name in _OBJECTS:
            ok = isinstance(value, dict)
        elif name in _BOOLEANS:
            ok = isinstance(value, bool)
        else:
            continue
        if not ok:
            raise _Invalid("invalid_field", name, f"{name}: wrong type {type(value).__name__}")
    when = fields.get("time")
    if when is not None and not 0 <= when <= _MAX_TIME_MS:
        raise _Invalid("invalid_field", "time", "time: out of range (milliseconds since the epoch)")


def _check_ids(fields: dict, min_length: int, groupless: bool) -> None:
    """Amplitude's id rules, in place: a placeholder id is invalid, a short one is removed."""
    short = None
    for name in ("user_id", "device_id"):
        value = fields.get(name)
        if value is None:
            continue
        if value.lower() in _INVALID_IDS:
            raise _Invalid("invalid_field", name, f"{name}: {value!r} is not a valid id")
        if len(value) < min_length:
            short = short or name
            del fields[name]
    if groupless:
        if _group_id(fields.get("groups")) is None:
            raise _Invalid("missing_field", "groups", "groups: required on $groupidentify")
        return
    if "user_id" not in fields and "device_id" not in fields:
        if short:
            raise _Invalid("invalid_id_length", short, f"{short}: shorter than min_id_length {min_length}")
        raise _Invalid("missing_field", "user_id", "user_id or device_id: required")


def _group_id(groups: Any) -> str | None:
    """The first group value: `groups` maps a type to a value or a list of values."""
    if isinstance(groups, dict):
        for value in groups.values():
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, str) and value:
                return value
        return None
    if isinstance(groups, list):  # a group_value given as a list
        return _group_id({"": groups})
    return groups if isinstance(groups, str) and groups else None


def _message_id(fields: dict, item: bytes, index: int, shared: _Request) -> str:
    insert_id = fields.get("insert_id")
    if insert_id:
        return insert_id
    event_type = fields["event_type"]
    parts: list[Any] = [shared.key, fields.get("device_id"), fields.get("user_id"), event_type,
                        fields.get("time"), fields.get("event_id")]
    if shared.path in _FORM_PATHS:
        parts = [shared.key, shared.path, fields]
    elif event_type in (IDENTIFY, GROUP_IDENTIFY):
        parts += [fields.get("user_properties"), fields.get("groups"), fields.get("group_properties")]
    if shared.path in _FORM_PATHS or fields.get("time") is None:
        parts += [shared.received_at, index]
    return "amp-" + hashlib.sha256(_encode(parts)).hexdigest()[:32]


def _canonical(fields: dict, message_id: str, shared: _Request):
    event_type = fields.pop("event_type")
    user_id, device_id = fields.pop("user_id", None), fields.pop("device_id", None)
    fields.pop("insert_id", None)
    when = fields.pop("time", None)
    context = _context_in(fields, shared.client_ip)
    extras: dict[str, Any] = {ORIGIN: True}
    common = {
        "message_id": message_id,
        "user_id": user_id,
        "anonymous_id": device_id,
        "original_timestamp": None if when is None else format_ms(when),
        "sent_at": shared.sent_at if when is not None else None,
    }
    if event_type == GROUP_IDENTIFY:
        traits, ops = _split_operations(fields.pop("group_properties", None))
        _keep(extras, "group_properties", ops)
        event = Group(group_id=_group_id(fields.get("groups")), traits=_raw_or_none(traits), **common)
    else:
        traits, ops = _split_operations(fields.pop("user_properties", None))
        _keep(extras, "user_properties", ops)
        group_id = _group_id(fields.get("groups"))
        if group_id is not None:
            context["groupId"] = group_id
        if event_type == IDENTIFY:
            event = Identify(traits=_raw_or_none(traits), **common)
        else:
            if traits is not None:
                context["traits"] = traits
            properties = fields.pop("event_properties", None)
            event = Track(event=event_type, properties=_raw_or_none(properties), **common)
    extras.update(fields)  # what the Spec cannot hold, verbatim
    event.context = raw(context) if context else NO_JSON
    event.integrations = raw({_EXTRAS: extras})
    return event


def _raw_or_none(value: dict | None) -> msgspec.Raw:
    return NO_JSON if value is None else raw(value)


def _keep(extras: dict, name: str, value: dict | None) -> None:
    if value:
        extras[name] = value


def _context_in(fields: dict, client_ip: str | None) -> dict:
    context: dict[str, Any] = {}
    ip = fields.pop("ip", None)
    if ip == "$remote":
        ip = client_ip
    if ip:
        context["ip"] = ip
    for name, path in _CONTEXT.items():
        value = fields.pop(name, None)
        if value is not None:
            if len(path) == 1:
                context[path[0]] = value
            else:
                context.setdefault(path[0], {})[path[1]] = value
    library = fields.pop("library", None)
    if library is not None:
        name, sep, version = library.partition("/")
        context["library"] = {"name": name, "version": version} if sep else {"name": name}
    return context


def _split_operations(properties: dict | None) -> tuple[dict | None, dict]:
    """(traits, kept operations): `$setOnce`, then plain keys, then `$set` (which wins) make
    the traits; every operation but `$set` is kept as it came, `$setOnce` included."""
    if properties is None:
        return None, {}
    traits: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    once = properties.get("$setOnce")
    if isinstance(once, dict):
        traits.update(once)
    for name, value in properties.items():
        if not name.startswith("$"):
            traits[name] = value
        elif name != "$set" or not isinstance(value, dict):
            ops[name] = value
    if isinstance(properties.get("$set"), dict):
        traits.update(properties["$set"])
    return traits, ops


_OK_FORM = Reply(200, b"success", "text/plain; charset=utf-8")


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    if request.path.rstrip("/") in _FORM_PATHS:
        return _OK_FORM
    body = {
        "code": 200,
        "events_ingested": accepted + duplicates,
        "payload_size_bytes": len(request.body),
        "server_upload_time": epoch_ms(request.received_at),
    }
    return Reply(200, _encode(body))


# IngestError code -> (status, Amplitude's `error`, extra fields); the HTTP V2 docs' wording.
_ERRORS: dict[str, tuple[int, str, dict]] = {
    "missing_body": (400, "Missing request body", {}),
    "invalid_json": (400, "Invalid JSON request body", {}),
    "invalid_form": (400, "Invalid JSON request body", {}),
    "invalid_events": (400, "Invalid event JSON", {}),
    "invalid_options": (400, "Invalid JSON request body", {}),
    "missing_api_key": (400, "Request missing required field", {"missing_field": "api_key"}),
    "missing_events": (400, "Request missing required field", {"missing_field": "events"}),
    "no_events": (400, "Request missing required field", {"missing_field": "events"}),
    "missing_identification": (400, "Request missing required field", {"missing_field": "identification"}),
    "not_found": (404, "Invalid request path", {}),
}
# Reject code -> the 400's map naming the events (anything else: events_with_invalid_fields).
_REJECT_MAPS = {
    "missing_field": "events_with_missing_fields",
    "invalid_id_length": "events_with_invalid_id_lengths",
}
_REJECT_ERRORS = {
    "missing_field": "Request missing required field",
    "invalid_event": "Invalid event JSON",
}
INVALID_KEY = "Invalid API key: "  # the SDKs match this prefix and drop the batch


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """Amplitude's error bodies: `code` always equals the HTTP status."""
    if error.rejects:
        return Reply(400, _encode(_rejects_body(error.rejects)))
    if error.status == 401:  # an api_key no source has: Amplitude's answer to a bad key
        return Reply(400, _encode({"code": 400, "error": INVALID_KEY + error.message}))
    status, text, extra = _ERRORS.get(error.code, (error.status, error.message, {}))
    if status == 413:
        text = "Payload too large"
    body = {"code": status, "error": text, **extra}
    after = error.retry_after_s
    headers = () if after is None else (("Retry-After", str(max(0, math.ceil(after)))),)
    return Reply(status, _encode(body), headers=headers)


def _rejects_body(rejects) -> dict:
    """Every bad event by field (Amplitude's docs show the first index per field; naming all
    lets an SDK drop them all in one round)."""
    body: dict[str, Any] = {"code": 400, "error": _REJECT_ERRORS.get(rejects[0].code, "Invalid field values on some events")}
    for reject in rejects:
        name = _REJECT_MAPS.get(reject.code, "events_with_invalid_fields")
        body.setdefault(name, {}).setdefault(reject.field or "event", []).append(reject.index)
    return body


# ---- destination half --------------------------------------------------------------

INTEGRATION_NAMES = ("Amplitude", "Actions Amplitude")
DEFAULT_BASE_URL = "https://api2.amplitude.com"
USERMAP_URL = "https://api.amplitude.com/usermap"  # the User Mapping API's own host
MAX_STRING = 1024  # Amplitude's limit on string values
MAX_DEPTH = 40  # Amplitude's limit on property nesting
MAX_FORM_ITEMS = {"identification": 1024, "mapping": 2000}  # /groupidentify, /usermap
MAX_FORM_BYTES = 1_000_000


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    api_key: str
    base_url: str = DEFAULT_BASE_URL  # EU projects: https://api.eu.amplitude.com
    endpoint: Literal["httpapi", "batch"] = "httpapi"  # /2/httpapi, or /batch (20 MB, 1,000 eps per id)
    min_id_length: int = 1  # sent as options.min_id_length: Amplitude's default 5 strips short ids
    page_event_name: str = "Viewed {name} Page"
    unnamed_page_event_name: str = "Loaded a Page"
    screen_event_name: str = "Viewed {name} Screen"
    unnamed_screen_event_name: str = "Loaded a Screen"
    group_type: str = "company"  # the Amplitude group type of a Segment-style group call
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


def skip_reason(event, settings: Settings) -> str | None:
    if isinstance(event, Alias) and not settings.use_usermap:
        return "alias_unsupported"
    return None


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    """The events request(s), then /groupidentify for group traits, then /usermap for aliases.
    A group appears in both an events request and a /groupidentify request."""
    encoded, indexes, groups, mappings = [], [], [], []
    for index, event in enumerate(events):
        if isinstance(event, Alias):
            mapping = _usermap_item(event)
            if settings.use_usermap and mapping is not None:
                mappings.append((index, mapping))
            continue
        body, group = _amplitude_event(event, settings)
        encoded.append(_encode(body))
        indexes.append(index)
        if group is not None:
            groups.append((index, group))
    requests = _event_requests(encoded, indexes, settings)
    base = settings.base_url.rstrip("/")
    requests += _form_requests(base + "/groupidentify", "identification", groups, settings)
    requests += _form_requests(_usermap_url(settings), "mapping", mappings, settings)
    return requests


def _event_requests(encoded: list[bytes], indexes: list[int], settings: Settings) -> list[OutboundRequest]:
    path = "/2/httpapi" if settings.endpoint == "httpapi" else "/batch"
    url = settings.base_url.rstrip("/") + path
    head = b'{"api_key":' + _encode(settings.api_key) + b',"events":['
    tail = b'],"options":{"min_id_length":' + str(settings.min_id_length).encode() + b"}}"
    headers = (("Content-Type", "application/json"),)
    return [
        OutboundRequest(url, head + b",".join(encoded[i] for i in part) + tail,
                        tuple(indexes[i] for i in part), headers=headers)
        for part in pack_json_batches(encoded, batch_limits(settings), envelope=len(head) + len(tail))
    ]


def _form_requests(url: str, field: str, items: list[tuple[int, dict]], settings: Settings) -> list[OutboundRequest]:
    """Form POSTs of `api_key` + `field`=<JSON array>, within the endpoint's limits."""
    if not items:
        return []
    prefix = f"api_key={quote_plus(settings.api_key)}&{field}=".encode()
    quoted = [quote_plus(_encode(item)).encode() for _, item in items]
    most = MAX_FORM_ITEMS[field]  # packing counts 1 byte between items; "%2C" takes 3
    limits = BatchLimits(max_events=most, max_bytes=MAX_FORM_BYTES - 2 * most)
    headers = (("Content-Type", "application/x-www-form-urlencoded"),)
    requests = []
    for part in pack_json_batches(quoted, limits, envelope=len(prefix) + 6):
        body = prefix + b"%5B" + b"%2C".join(quoted[i] for i in part) + b"%5D"
        requests.append(OutboundRequest(url, body, tuple(items[i][0] for i in part), headers=headers))
    return requests


def _usermap_url(settings: Settings) -> str:
    if settings.usermap_url:
        return settings.usermap_url
    base = settings.base_url.rstrip("/")
    return USERMAP_URL if base == DEFAULT_BASE_URL else base + "/usermap"


def _usermap_item(event) -> dict | None:
    """alias previousId -> userId as Amplitude's mapping of a user_id to a global_user_id."""
    if not event.previous_id or not event.user_id:
        return None
    return {"user_id": event.previous_id, "global_user_id": event.user_id}


def _extras(event) -> dict:
    """The event's `integrations.Amplitude` object (or `Actions Amplitude`), else {}."""
    flags = obj(event.integrations)
    for name in INTEGRATION_NAMES:
        value = flags.get(name)
        if isinstance(value, dict):
            return value
    return {}


def _amplitude_event(event, settings: Settings) -> tuple[dict, dict | None]:
    """One canonical event -> (its Amplitude event, its /groupidentify item or None)."""
    extras = _extras(event)
    ours = extras.get(ORIGIN) is True
    context = obj(event.context)
    out = _valid_extras(extras, ours)
    out.update(_context_out(context, ours))
    if event.user_id:
        out["user_id"] = event.user_id
    device = context.get("device")
    device_id = device.get("id") if isinstance(device, dict) and not ours else None
    device_id = device_id if isinstance(device_id, str) and device_id else event.anonymous_id
    if device_id:
        out["device_id"] = device_id
    when = event.timestamp or event.original_timestamp or event.received_at
    if when:
        out["time"] = epoch_ms(when)
    if event.message_id:
        out["insert_id"] = event.message_id
    group = None
    if isinstance(event, Track):
        _track(event, out, extras, context, settings, ours)
    elif isinstance(event, Identify):
        out["event_type"] = IDENTIFY
        _set_properties(out, "user_properties", _operations(obj(event.traits), extras.get("user_properties")))
    elif isinstance(event, Group):
        group = _group(event, out, extras, settings, ours)
    else:  # Page, Screen
        _page(event, out, settings)
    return out, group


def _valid_extras(extras: dict, ours: bool) -> dict:
    """The verbatim fields of integrations.Amplitude; from another source, only those of
    Amplitude's type (a wrong one would have Amplitude refuse the event)."""
    out = {k: v for k, v in extras.items() if k not in (ORIGIN, "user_properties", "group_properties")}
    if ours:
        return out
    session = out.get("session_id")
    if isinstance(session, str):
        digits = re.search(r"(\d+)$", session)
        out["session_id"] = int(digits.group(1)) if digits else None
    try:
        _check_types({k: v for k, v in out.items() if v is not None})
    except _Invalid as problem:
        out.pop(problem.field, None)
        return _valid_extras(out, ours)
    return {k: v for k, v in out.items() if v is not None}


def _context_out(context: dict, ours: bool) -> dict:
    out: dict[str, Any] = {}
    ip = context.get("ip")
    if isinstance(ip, str) and ip:
        out["ip"] = ip
    for name, path in _CONTEXT.items():
        value = context.get(path[0])
        if len(path) == 2:
            value = value.get(path[1]) if isinstance(value, dict) else None
        if value is None:
            continue
        if name in _NUMBERS and type(value) in (int, float) or name not in _NUMBERS and isinstance(value, str):
            out[name] = value
    library = context.get("library")
    if isinstance(library, dict) and isinstance(library.get("name"), str):
        version = library.get("version")
        out["library"] = library["name"] + (f"/{version}" if isinstance(version, str) else "")
    if not ours:
        out.update(_advertising_id(context))
    return out


def _advertising_id(context: dict) -> dict:
    device, os_ = context.get("device"), context.get("os")
    ad_id = device.get("advertisingId") if isinstance(device, dict) else None
    os_name = os_.get("name") if isinstance(os_, dict) else None
    if not isinstance(ad_id, str) or not isinstance(os_name, str):
        return {}
    os_name = os_name.lower()
    if os_name in ("ios", "ipados", "tvos", "iphone os"):
        return {"idfa": ad_id}
    if os_name == "android":
        return {"adid": ad_id}
    return {}


def _track(event, out: dict, extras: dict, context: dict, settings: Settings, ours: bool) -> None:
    out["event_type"] = event.event or ""
    properties = obj(event.properties) if event.properties else None
    if properties is not None:
        out["event_properties"] = _fit(properties)
    traits = context.get("traits")
    traits = traits if isinstance(traits, dict) else None
    ops = extras.get("user_properties")
    if isinstance(ops, dict) and ops:
        _set_properties(out, "user_properties", _operations(traits or {}, ops))
    elif traits is not None:
        out["user_properties"] = _fit(traits)
    if not ours and settings.revenue_from_properties and properties:
        for name, value in _revenue(properties).items():
            out.setdefault(name, value)


_REVENUE = (  # properties key -> (Amplitude field, accepted types)
    ("revenue", "revenue", (int, float)),
    ("price", "price", (int, float)),
    ("quantity", "quantity", (int,)),
    ("currency", "currency", (str,)),
    ("productId", "productId", (str,)),
    ("product_id", "productId", (str,)),
    ("revenueType", "revenueType", (str,)),
    ("revenue_type", "revenueType", (str,)),
)


def _revenue(properties: dict) -> dict:
    found: dict[str, Any] = {}
    for key, name, types in _REVENUE:
        value = properties.get(key)
        if type(value) in types and name not in found:
            found[name] = value
    return found


def _operations(traits: dict, kept: Any) -> dict:
    """user_properties / group_properties: `$set` of the traits (less what a kept `$setOnce`
    sets to the same value), then the kept operations."""
    kept = kept if isinstance(kept, dict) else {}
    once = kept.get("$setOnce")
    once = once if isinstance(once, dict) else {}
    to_set = {k: v for k, v in traits.items() if not (k in once and once[k] == v)}
    out = {"$set": to_set} if to_set else {}
    out.update(kept)
    return out


def _set_properties(out: dict, name: str, value: dict) -> None:
    if value:
        out[name] = _fit(value)


def _group(event, out: dict, extras: dict, settings: Settings, ours: bool) -> dict | None:
    groups = extras.get("groups")
    if not isinstance(groups, dict) or not groups:
        groups = {settings.group_type: event.group_id or ""}
    traits = obj(event.traits)
    if ours or not (event.user_id or event.anonymous_id):
        out["event_type"] = GROUP_IDENTIFY
        out["groups"] = groups
        _set_properties(out, "group_properties", _operations(traits, extras.get("group_properties")))
        return None
    out["event_type"] = IDENTIFY
    out["groups"] = groups
    out["user_properties"] = {"$set": dict(groups)}
    if not traits:
        return None
    group_type, group_value = next(iter(groups.items()))
    return {"group_type": group_type, "group_value": group_value, "group_properties": _fit({"$set": traits})}


def _page(event, out: dict, settings: Settings) -> None:
    screen = isinstance(event, Screen)
    if event.name:
        template = settings.screen_event_name if screen else settings.page_event_name
    else:
        template = settings.unnamed_screen_event_name if screen else settings.unnamed_page_event_name
    out["event_type"] = template.replace("{name}", event.name or "").replace("{category}", event.category or "")
    properties = obj(event.properties)
    for key, value in (("name", event.name), ("category", event.category)):
        if value is not None:
            properties.setdefault(key, value)
    if properties or event.properties:
        out["event_properties"] = _fit(properties)


def _fit(value: Any, depth: int = 0, in_array: bool = False) -> Any:
    """Within Amplitude's limits: strings of at most 1,024 characters, no array directly in
    an array, at most 40 levels (what breaks a rule is sent as its JSON text)."""
    if isinstance(value, str):
        return value[:MAX_STRING] if len(value) > MAX_STRING else value
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return _as_text(value)
        return {key: _fit(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        if in_array or depth >= MAX_DEPTH:
            return _as_text(value)
        return [_fit(item, depth + 1, True) for item in value]
    return value


def _as_text(value: Any) -> str:
    return _encode(value).decode()[:MAX_STRING]


# ---- classifying responses ---------------------------------------------------------


class _Ids(msgspec.Struct):
    user_id: Any = None
    device_id: Any = None


class _SentEvents(msgspec.Struct):
    events: list[_Ids] = []


_decode_sent = msgspec.json.Decoder(_SentEvents).decode
_NAMED_400 = (  # Amplitude's lists of bad events -> our dead-letter code
    ("events_with_invalid_fields", "amplitude_invalid_fields"),
    ("events_with_missing_fields", "amplitude_missing_fields"),
    ("events_with_invalid_id_lengths", "amplitude_invalid_id_lengths"),
)
RESEND = Verdict("resend", "amplitude_not_at_fault")
THROTTLE_WAIT_S = 30.0  # HTTP V2 docs: pause a throttled user or device for 30 s


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    """Verdicts for the events of one request, in order (vendor-apis.md section 3.3)."""
    n = len(request.events)
    path = urlsplit(request.url).path
    if path.endswith(("/groupidentify", "/usermap")):
        return [_form_verdict(response, n)] * n
    body = _json_object(response.body)
    code = body.get("code") if body is not None else None
    status = code if type(code) is int else response.status
    detail = _detail(body, response.body)
    if 200 <= response.status < 300 and body is not None and type(code) is not int:
        return [Verdict("retry", "amplitude_unexpected_response", detail=detail)] * n
    if 200 <= status < 300:
        return [Verdict("delivered")] * n
    if status == 413:
        return [Verdict("split" if n > 1 else "dead", "amplitude_payload_too_large", detail=detail)] * n
    if status in (400, 429) and body is not None:
        return _partial(status, body, request, response, detail)
    verdict = http_verdict(status, response.headers)
    return [msgspec.structs.replace(verdict, detail=detail)] * n


def _throttle_wait(response: Response) -> float:
    """Amplitude asks throttled users to wait 30 s; it sends no Retry-After, but one wins."""
    after = parse_retry_after(response.headers.get("retry-after"))
    return THROTTLE_WAIT_S if after is None else after


def _form_verdict(response: Response, n: int) -> Verdict:
    detail = response.body[:300].decode("utf-8", "replace")
    if response.status == 413:
        return Verdict("split" if n > 1 else "dead", "amplitude_payload_too_large", detail=detail)
    verdict = http_verdict(response.status, response.headers)
    if response.status == 429 and verdict.retry_after_s is None:
        verdict = msgspec.structs.replace(verdict, retry_after_s=THROTTLE_WAIT_S)
    return msgspec.structs.replace(verdict, detail=detail) if verdict.status != "delivered" else verdict


def _json_object(body: bytes) -> dict | None:
    try:
        value = _decode_any(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _detail(body: dict | None, raw_body: bytes) -> str:
    if body is not None and isinstance(body.get("error"), str):
        return body["error"][:300]
    return raw_body[:300].decode("utf-8", "replace")


def _indexes(value: Any, n: int) -> list[int]:
    if not isinstance(value, list):
        return []
    return [i for i in value if type(i) is int and 0 <= i < n]


def _partial(status: int, body: dict, request: OutboundRequest, response: Response, detail: str) -> list[Verdict]:
    """Amplitude's 400 and 429 name events: only those are dead or wait; the rest resend."""
    n = len(request.events)
    error = body.get("error") if isinstance(body.get("error"), str) else ""
    if status == 400 and (error.startswith("Invalid API key") or body.get("missing_field")):
        code = "amplitude_invalid_api_key" if error.startswith("Invalid API key") else "amplitude_missing_field"
        return [Verdict("dead", code, detail=detail)] * n
    verdicts: list[Verdict | None] = [None] * n
    for name, code in _NAMED_400:
        lists = body.get(name)
        for indexes in lists.values() if isinstance(lists, dict) else ():
            for i in _indexes(indexes, n):
                verdicts[i] = verdicts[i] or Verdict("dead", code, detail=detail)
    for i in _indexes(body.get("silenced_events"), n):
        verdicts[i] = verdicts[i] or Verdict("dead", "amplitude_silenced", detail=detail)
    throttled = _indexes(body.get("throttled_events"), n)
    if throttled:
        over_quota = _over_quota(body, request, throttled)
        wait = _throttle_wait(response)
        for i in throttled:
            if verdicts[i] is None:
                verdicts[i] = (Verdict("dead", "amplitude_daily_quota", detail=detail) if i in over_quota
                               else Verdict("retry", "amplitude_throttled", retry_after_s=wait, detail=detail,
                                            hold_destination=False))  # only these users wait
    if all(v is None for v in verdicts):  # nothing named: the request as a whole
        if status == 429:
            return [Verdict("retry", "http_429", retry_after_s=_throttle_wait(response), detail=detail)] * n
        return [Verdict("dead", "http_400", detail=detail)] * n
    return [v or RESEND for v in verdicts]


def _over_quota(body: dict, request: OutboundRequest, throttled: list[int]) -> set[int]:
    users, devices = body.get("exceeded_daily_quota_users"), body.get("exceeded_daily_quota_devices")
    users = users if isinstance(users, dict) else {}
    devices = devices if isinstance(devices, dict) else {}
    if not users and not devices:
        return set()
    sent = _decode_sent(request.body).events
    return {
        i for i in throttled
        if i < len(sent) and (_in(sent[i].user_id, users) or _in(sent[i].device_id, devices))
    }


def _in(value: Any, ids: dict) -> bool:
    return isinstance(value, str) and value in ids
