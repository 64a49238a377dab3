"""Segment's HTTP Tracking API both ways: the dialect SDKs post in, and Segment as a destination.

Source half: the 14 paths `/v1/{identify,track,page,screen,group,alias,batch}` and their
analytics.js short forms `/v1/{i,t,p,s,g,a,b}`, plus `/v1/import` (an alias of batch). The body
is JSON whatever the Content-Type says. RudderStack's SDKs speak this dialect too. The write key
is the user of `Authorization: Basic` (colon optional), else the body's `writeKey`.

Destination half: `POST {base_url}/v1/batch` with Basic auth, split by Segment's limits, and
Segment's SDK retry rules (retry 408, 410, 429, 460 and 5xx but 501/505/511; a 400 about size
or a 413 splits the batch; other 4xx are dead).

Whole requests are refused (IngestError 400) for: invalid_json (not JSON, not UTF-8, not an
object), invalid_batch (`batch` missing or not a list, batch-level `context`/`integrations` not
objects), invalid_timestamp (batch-level `sentAt`), too_many_events, too_deeply_nested; and
with 404 not_found off the routes.
Single messages are rejected, the others kept, for: event_too_large, invalid_encoding,
invalid_event (not an object), invalid_type, missing_identifier, missing_event,
missing_group_id, missing_previous_id, invalid_field (a wrong JSON type; the message names the
field), invalid_timestamp, invalid_message_id (over 100 characters).

Lossy conversions, in (Segment request -> canonical):
- Top-level fields outside the Spec are dropped (`_metadata`, `channel`, `version`, `options`,
  an item's `writeKey`, identify `properties`, ...). `context`, `integrations`, `properties` and
  `traits` pass through byte for byte (except the two merges below).
- The item's `timestamp` becomes `originalTimestamp` (Rudder Node's `originalTimestamp` is used
  when there is no `timestamp`; with both, the item's `originalTimestamp` is dropped).
- Every time is rewritten as ISO 8601 UTC with milliseconds and "Z": sub-millisecond digits
  and the client's UTC offset are lost.
- A client's own `receivedAt` and a top-level `source` are dropped: trackgate sets them.
- Empty strings in userId, anonymousId, messageId and the time fields read as absent; a JSON
  `null` object (`"traits": null`) reads as absent.
- Batch-level `context`/`integrations` are merged into each item (shallow, item keys win): the
  merged object is re-encoded (key order: the batch's keys first, whitespace removed).
- An identify without `traits` takes them from `context.traits` (Rudder Python); the context
  keeps its copy.
- On a single-event path the path decides the type; a body `type` that disagrees is replaced.
- A key that occurs twice in one object: the last one wins.

Lossy conversions, out (canonical -> Segment):
- trackgate's `source` is not sent (not part of the Spec).
- `sentAt` is not sent: trackgate already corrected the client's clock skew in `timestamp`,
  and Segment would correct it again against its own receive time, moving any event delivered
  late (queued, retried, replayed) to its delivery time. An event without `timestamp` is sent
  with its `originalTimestamp` as `timestamp`.
- Segment ignores context keys outside its Spec and recomputes `receivedAt`; `integrations`
  flags are sent as they are, and Segment honours them for its own destinations.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from typing import Any

import msgspec

from gateway.adapter import (
    NO_JSON,
    Alias,
    BatchLimits,
    Decoded,
    Event,
    Group,
    Identify,
    InboundRequest,
    IngestError,
    OutboundRequest,
    Reject,
    Reply,
    Response,
    SourceLimits,
    Track,
    Verdict,
    canonical_time,
    http_verdict,
    pack_json_batches,
    parse_retry_after,
    raw,
)
from gateway.adapter import EVENT_TYPES as _TYPES

# ---- source half -------------------------------------------------------------------

_SHORT = {"identify": "i", "track": "t", "page": "p", "screen": "s", "group": "g", "alias": "a"}
_PATHS: dict[str, str | None] = {f"/v1/{name}": name for name in _SHORT}
_PATHS.update({f"/v1/{short}": name for name, short in _SHORT.items()})
_PATHS.update({"/v1/batch": None, "/v1/b": None, "/v1/import": None})
ROUTES = tuple(_PATHS)

MAX_MESSAGE_ID = 100
_TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
_OBJECTS = {  # type -> ((attribute, bytes of its `"key":`), ...) in the order they are checked
    cls: tuple((f, len(f) + 3) for f in ("context", "integrations", "properties", "traits") if hasattr(cls, f))
    for cls in _TYPES.values()
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
_REQUIRED = {  # type -> (attribute, reject code, wire name)
    Track: ("event", "missing_event", "event"),
    Group: ("group_id", "missing_group_id", "groupId"),
    Alias: ("previous_id", "missing_previous_id", "previousId"),
}


class _Single(msgspec.Struct):
    writeKey: Any = None


class _Batch(msgspec.Struct):
    batch: list[msgspec.Raw] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sentAt: Any = None
    writeKey: Any = None


class _WholeBatch(msgspec.Struct):
    batch: list[Event] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sentAt: Any = None
    writeKey: Any = None


_decode_single = msgspec.json.Decoder(_Single).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode
_decode_whole = msgspec.json.Decoder(_WholeBatch).decode
_decode_any = msgspec.json.Decoder(Event).decode
_decode_as = {name: msgspec.json.Decoder(cls).decode for name, cls in _TYPES.items()}
_decode_dict = msgspec.json.Decoder(dict).decode
_encode = msgspec.json.Encoder().encode
_first_byte = struct.Struct("B").unpack_from  # the cheapest look at a Raw's first byte
_OBJECT = 0x7B  # "{"
_NULL = 0x6E  # "n"


_NO_BATCH = (None, None, None)  # a single message's batch-level (context, integrations, sentAt)


class _Invalid(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def decode(request: InboundRequest, limits: SourceLimits) -> Decoded:
    """A Segment-dialect request -> canonical events (valid ones) and rejects (the others)."""
    kind = _PATHS.get(request.path.rstrip("/"), "")
    if kind == "":
        raise IngestError(404, "not_found", f"no Segment endpoint at {request.path}")
    utf8 = _is_utf8(request.body)  # msgspec does not check what it keeps as Raw
    if utf8:  # the fast paths, for valid requests; None leaves the decision to the path below
        fast = _whole_batch(request, limits) if kind is None else _whole_single(request, kind, limits)
        if fast is not None:
            return fast
    envelope = _envelope(request.body, kind)
    key = _key(request, envelope)
    if kind is None:
        items = envelope.batch
        if items is None:
            raise IngestError(400, "invalid_batch", "batch: required, a list of messages")
        if len(items) > limits.max_events:
            raise IngestError(
                400, "too_many_events", f"{len(items)} messages; at most {limits.max_events}"
            )
        batch = (envelope.context, envelope.integrations, _batch_sent_at(envelope.sentAt))
    else:
        items = [request.body]
        batch = _NO_BATCH
    events: list = []
    rejects: list[Reject] = []
    limit = limits.max_event_bytes
    check_utf8 = not utf8
    for index, item in enumerate(items):
        try:
            if len(item) > limit:
                raise _Invalid("event_too_large", f"message is {len(item)} bytes; at most {limit}")
            if check_utf8 and not _is_utf8(item):
                raise _Invalid("invalid_encoding", "message: not valid UTF-8")
            events.append(_event(item, kind, batch))
        except _Invalid as problem:
            rejects.append(Reject(index, problem.code, problem.message, bytes(item)))
    return Decoded(key, events, rejects)


def _key(request: InboundRequest, envelope: Any) -> str | None:
    key = _basic_user(request.headers.get("authorization", ""))
    if key is None and isinstance(envelope.writeKey, str) and envelope.writeKey:
        key = envelope.writeKey
    return key


def _whole_single(request: InboundRequest, kind: str, limits: SourceLimits) -> Decoded | None:
    """A valid single message whose key is in its Authorization header, decoded in one pass
    (its body's `writeKey` is not needed then), or None when anything is off."""
    key = _basic_user(request.headers.get("authorization", ""))
    if key is None or len(request.body) > limits.max_event_bytes:
        return None
    try:
        event = _decode_as[kind](request.body)
        _normalise(event, _NO_BATCH)
    except (_Invalid, msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError too
        return None
    return Decoded(key, [event])


def _whole_batch(request: InboundRequest, limits: SourceLimits) -> Decoded | None:
    """A valid batch decoded in one msgspec pass, envelope and items together, or None when
    anything is off: the item-by-item path then decides (and isolates rejects).

    No item may exceed `max_event_bytes`. Items are disjoint parts of the body, so with L_i a
    lower bound of item i's size (from `_normalise`), size_i <= len(body) - sum(L) + L_i."""
    body = request.body
    try:
        envelope = _decode_whole(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError too
        return None
    events = envelope.batch
    if events is None or len(events) > limits.max_events:
        return None
    try:
        batch = (envelope.context, envelope.integrations, _batch_sent_at(envelope.sentAt))
        sizes = [_normalise(event, batch) for event in events]
    except (_Invalid, IngestError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if sizes and len(body) - sum(sizes) + max(sizes) > limits.max_event_bytes:
        return None
    return Decoded(_key(request, envelope), events)


def _envelope(body: bytes, kind: str | None) -> Any:
    try:
        return _decode_batch(body) if kind is None else _decode_single(body)
    except msgspec.ValidationError as error:
        field = _field(error)
        if field is None:
            raise IngestError(400, "invalid_json", "body: must be a JSON object") from None
        raise IngestError(400, "invalid_batch", f"{field}: {_reason(error)}") from None
    except msgspec.DecodeError as error:
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    except UnicodeDecodeError:
        raise IngestError(400, "invalid_json", "body is not valid UTF-8") from None
    except RecursionError:
        raise IngestError(400, "too_deeply_nested", "body: nested too deeply") from None


def _is_utf8(data: Any) -> bool:
    if isinstance(data, bytes) and data.isascii():
        return True
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


_users: dict[str, str | None] = {}  # Authorization header -> key: SDKs send one header again and again


def _basic_user(header: str) -> str | None:
    if header in _users:
        return _users[header]
    if len(_users) >= 256:
        _users.clear()
    user = _users[header] = _decode_basic(header)
    return user


def _decode_basic(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    token = token.strip()
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        return None
    return text.partition(":")[0] or None


def _batch_sent_at(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise _Invalid("invalid_timestamp", "sentAt: must be an ISO 8601 string")
        return _time(value, "sentAt")
    except _Invalid as problem:
        raise IngestError(400, problem.code, problem.message) from None


def _event(item: Any, kind: str | None, batch: tuple) -> Event:
    try:
        try:
            event = _decode_any(item) if kind is None else _decode_as[kind](item)
        except msgspec.ValidationError as error:
            if kind is None or _field(error) != "type":
                raise
            fixed = _decode_dict(item)  # the path decides the type
            fixed["type"] = kind
            event = _decode_as[kind](_encode(fixed))
        _normalise(event, batch)
    except msgspec.ValidationError as error:
        raise _invalid(error) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # e.g. a lone surrogate escape
        raise _Invalid("invalid_event", f"message: not valid JSON: {error}") from None
    except RecursionError:
        raise _Invalid("too_deeply_nested", "message: nested too deeply") from None
    return event


def _invalid(error: msgspec.ValidationError) -> _Invalid:
    field = _field(error)
    if field is None:
        if "`type`" in str(error):
            return _Invalid("invalid_type", "type: required")
        return _Invalid("invalid_event", "message: must be a JSON object")
    if field == "type":
        return _Invalid("invalid_type", f"type: {_reason(error)}; one of {', '.join(_TYPES)}")
    if field in _TIME_FIELDS:
        return _Invalid("invalid_timestamp", f"{field}: must be an ISO 8601 string")
    return _Invalid("invalid_field", f"{field}: {_reason(error)}")


def _field(error: msgspec.ValidationError) -> str | None:
    """The top-level field a msgspec error names (`... - at `$.userId``), if any."""
    _, sep, where = str(error).rpartition(" - at `$.")
    return where.rstrip("`").split("[")[0].split(".")[0] if sep else None


def _reason(error: msgspec.ValidationError) -> str:
    return str(error).rpartition(" - at `")[0] or str(error)


def _normalise(event: Any, batch: tuple) -> int:
    """Validate one decoded message per the Spec and bring it to canonical form, in place.
    Returns a lower bound of the message's size in bytes: the JSON of the fields read here."""
    user_id, anonymous_id, message_id = event.user_id, event.anonymous_id, event.message_id
    size = 15  # {"type":"page"}, the shortest message
    if user_id:
        size += len(user_id) + 11  # "userId":"..."
        if anonymous_id:
            size += len(anonymous_id) + 16  # "anonymousId":"..."
        elif anonymous_id is not None:
            event.anonymous_id = None
    elif anonymous_id:
        size += len(anonymous_id) + 16
        if user_id is not None:
            event.user_id = None
    else:
        raise _Invalid("missing_identifier", "userId or anonymousId: required")
    if message_id is not None:
        if len(message_id) > MAX_MESSAGE_ID:
            raise _Invalid("invalid_message_id", f"messageId: over {MAX_MESSAGE_ID} chars")
        if message_id:
            size += len(message_id) + 14  # "messageId":"..."
        else:
            event.message_id = None
    cls = type(event)
    required = _REQUIRED.get(cls)
    if required is not None and not getattr(event, required[0]):
        raise _Invalid(required[1], f"{required[2]}: required on {_NAMES[cls]}")
    for name, key_size in _OBJECTS[cls]:
        value = getattr(event, name)
        if value:
            size += len(value) + key_size
            first = _first_byte(value)[0]
            if first != _OBJECT:
                if first != _NULL:
                    raise _Invalid("invalid_field", f"{name}: must be an object")
                setattr(event, name, NO_JSON)
    context, integrations, sent_at = batch
    if context:
        event.context = raw({**context, **_object(event.context)})
    if integrations:
        event.integrations = raw({**integrations, **_object(event.integrations)})
    if cls is Identify and not event.traits and event.context:
        traits = _object(event.context).get("traits")
        if isinstance(traits, dict):
            event.traits = raw(traits)
    when = event.timestamp
    if when:
        size += len(when) + 14  # "timestamp":"..."
        event.timestamp = None
        event.original_timestamp = _time(when, "timestamp")
    else:
        if when is not None:
            event.timestamp = None
        when = event.original_timestamp
        event.original_timestamp = _time(when, "originalTimestamp") if when else None
    when = event.sent_at
    event.sent_at = _time(when, "sentAt") if when else sent_at
    if event.received_at is not None or event.source is not None:
        event.received_at = event.source = None
    return size


def _object(value: msgspec.Raw) -> dict:
    """A Raw field already checked to hold an object (or nothing) as a dict."""
    return _decode_dict(value) if value else {}


def _time(text: str, field: str) -> str:
    """`text` as trackgate's one time form (no cache: an SDK's events rarely share one)."""
    try:
        return canonical_time(text)
    except (ValueError, OverflowError):
        raise _Invalid("invalid_timestamp", f"{field}: not an ISO 8601 time") from None


_OK = Reply(200, b'{"success":true}')


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    return _OK


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """`code` equals the HTTP status: Rudder Python retries a 4xx without code and message."""
    body = {"success": False, "code": error.status, "error": error.code, "message": error.message}
    after = error.retry_after_s
    headers = () if after is None else (("Retry-After", str(max(0, math.ceil(after)))),)
    return Reply(error.status, _encode(body), headers=headers)


# ---- destination half --------------------------------------------------------------

INTEGRATION_NAMES = ("Segment", "Segment.io")
MAX_RETRY_AFTER_S = 300.0  # Segment's own SDKs cap Retry-After here
_RETRY = frozenset((408, 410, 429, 460))
_DEAD_5XX = frozenset((501, 505, 511))  # 511: retried by Segment only with OAuth
_TOO_LARGE = re.compile(rb"too (large|big)|size|exceed", re.IGNORECASE)


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    write_key: str
    base_url: str = "https://api.segment.io"  # EU workspaces: their regional host

    def __post_init__(self) -> None:
        if not self.write_key.strip():
            raise ValueError("write_key: must not be empty")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url: must start with http:// or https://")


def batch_limits(settings: Settings) -> BatchLimits:
    """500 KB per request (475,000 B like Segment's SDKs), 32 KB per event; Segment takes 2,500
    events but smaller requests retry and split more cheaply."""
    return BatchLimits(max_events=500, max_bytes=475_000, max_event_bytes=32_768)


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    limits = batch_limits(settings)
    url = settings.base_url.rstrip("/") + "/v1/batch"
    token = base64.b64encode(f"{settings.write_key}:".encode()).decode("ascii")
    headers = (("Authorization", f"Basic {token}"), ("Content-Type", "application/json"))
    encoded = [_encode(_outgoing(event)) for event in events]
    return [
        OutboundRequest(url, b'{"batch":[' + b",".join(encoded[i] for i in part) + b"]}",
                        tuple(part), headers=headers)
        for part in pack_json_batches(encoded, limits)
    ]


def _outgoing(event: Any) -> Any:
    if event.source is None and event.sent_at is None and event.timestamp is not None:
        return event
    return msgspec.structs.replace(
        event, source=None, sent_at=None, timestamp=event.timestamp or event.original_timestamp
    )


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    verdict = _verdict(response, len(request.events))
    return [verdict] * len(request.events)


def _verdict(response: Response, count: int) -> Verdict:
    status, headers = response.status, response.headers
    if "retry-after" not in headers and "x-ratelimit-reset" in headers:
        headers = {"retry-after": headers["x-ratelimit-reset"]}
    base = http_verdict(status, headers)
    if base.status == "delivered":
        return base
    code, detail = base.code, response.body[:300].decode("utf-8", "replace")
    if status in _RETRY or (500 <= status < 600 and status not in _DEAD_5XX):
        after = parse_retry_after(headers.get("retry-after"))
        if after is not None:
            after = min(after, MAX_RETRY_AFTER_S)
        return Verdict("retry", code, retry_after_s=after, detail=detail)
    if status == 413 or (status == 400 and _TOO_LARGE.search(response.body)):
        return Verdict("split" if count > 1 else "dead", code, detail=detail)
    return Verdict("dead", code, detail=detail)


# ---- sample requests (`trackgate send`) ----------------------------------------------

_SAMPLE_FIELDS = {
    "identify": {"traits": {"email": "test@example.com", "firstName": "Test"}},
    "track": {"properties": {"source": "trackgate send"}},
    "page": {"name": "Home", "properties": {"url": "https://example.com/"}},
    "screen": {"name": "Home"},
    "group": {"groupId": "trackgate-test-group", "traits": {"name": "Test Group"}},
    "alias": {"previousId": "trackgate-test-anonymous"},
}


def sample_request(key: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """A single Segment call as an SDK would send it: (path, headers, body). `fields` holds
    `type` and any Spec fields to set (userId, event, messageId, ...)."""
    kind = fields.get("type", "track")
    body = {**_SAMPLE_FIELDS[kind], **{k: v for k, v in fields.items() if k != "type"}}
    if kind != "track":
        body.pop("event", None)
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    return f"/v1/{kind}", headers, msgspec.json.encode(body)
