"""Tranthor's public app API (Dittofeed's) both ways: the dialect its SDKs post, and a destination.

Source half: `POST /api/public/apps/{identify,track,page,screen,group,batch}` (and `/alias`,
which answers 400 `{"message":"Not yet implemented."}` like Dittofeed's). The key is the token
after the scheme word of `authorization` (`Basic <token>` or `Bearer <token>`; Dittofeed ignores
the scheme), else the `PublicWriteKey` header its docs show (with or without a scheme word). A
source's configured key is that token, e.g. `d2staWQtMTp3ay1zZWNyZXQtMg==` for an SDK whose
writeKey is `Basic d2staWQtMTp3ay1zZWNyZXQtMg==`. The body is JSON, sent as `application/json`,
`text/plain` or without a Content-Type (another one is a 415, as in Fastify). Like Dittofeed's schema
validation, one invalid item refuses the whole request (Decoded.atomic): 400 in Fastify's
shape `{"statusCode":400,"code":"FST_ERR_VALIDATION","error":"Bad Request","message":
"body/batch/0 must have required property 'messageId'"}`. An item needs `messageId`, `userId`
or `anonymousId`, `event` on track and `groupId` on group; `timestamp`, if present, must be ISO
8601. Success is 204 with an empty body; an unknown key is 401 `{"message":"InvalidWriteKey"}`.
A source without `limits:` takes Dittofeed's own: 5 MiB a request, no smaller limit per event
(the Node SDK does not retry, and a refused timer flush crashes its process). An empty batch
is a 204, as in Dittofeed.

Destination half: `POST {base_url}/api/public/apps/batch` with `authorization: Basic <token>`,
`{"batch":[...]}` of at most 100 items (Dittofeed inserts in chunks of 100) and 5 MiB (its
default body limit). 2xx delivered; 401 pauses the destination (bad key or ineligible
workspace); 400 is dead, only for the item its message names (`body/batch/<i>...`) when it
names one, the others are sent again; 413 splits; 429, 408, 5xx and network errors retry
(Retry-After honoured). Retries are safe: Dittofeed deduplicates on `messageId` when it reads.
Events Dittofeed would refuse are skipped and counted, not sent: alias (`alias_unsupported`),
no userId nor anonymousId (`missing_identifier`), track without event (`missing_event`),
group without groupId (`missing_group_id`).

Tranthor-only fields travel in `integrations.Tranthor` (the Segment way): track `files` and
group `assigned`. Other destinations get them there; the Tranthor destination puts them back.

Lossy conversions, in (Tranthor request -> canonical):
- Fields outside Dittofeed's schema and the Spec are dropped (`sentAt`, `originalTimestamp`,
  `receivedAt`, identify `properties`, track `traits`, batch-level `integrations`, ...);
  `context`, `traits`, `properties` and `integrations` pass through byte for byte.
- Batch-level `context` is merged into each item's (shallow, item keys win; as Dittofeed's
  batch.ts does) and the merged object re-encoded (the batch's keys first, no whitespace).
- `files` and `assigned` move into `integrations.Tranthor` (re-encoded with it); when the item
  says `"integrations":{"Tranthor":false}` they are dropped (the event never goes to Tranthor).
- `timestamp` becomes `originalTimestamp` rewritten as ISO 8601 UTC with milliseconds and "Z"
  (sub-millisecond digits and the UTC offset are lost); without one, trackgate's receipt time
  is the event time (Dittofeed would use its own, later, clock).
- Numbers and booleans in string fields (`userId`, `messageId`, `event`, ...) become strings,
  as Fastify's type coercion makes them (`42` -> "42", `true` -> "true"); a float is refused.
- Empty strings in `userId`, `anonymousId`, `messageId` and `timestamp` read as absent (an
  empty `messageId` is replaced by a generated one); a JSON `null` object reads as absent.
- On a single-event path the path decides the type; a body `type` is ignored.
- A key that occurs twice in one object: the last one wins.
Stricter than Dittofeed: an unparseable `timestamp` is refused (Dittofeed stores the epoch),
an empty `userId`/`event`/`groupId` counts as missing, `integrations` must be an object.

Lossy conversions, out (canonical -> Tranthor):
- alias is not sent (skipped, counted as `skipped_alias_unsupported`): Dittofeed has no alias.
- `timestamp` is the skew-corrected event time; `originalTimestamp`, `sentAt`, `receivedAt`
  and trackgate's `source` are not sent.
- `integrations` is sent (Dittofeed stores it raw, unread) minus the `Tranthor` extension
  fields put back at the top; an `integrations` left empty by that is left out.

Note: Dittofeed keeps a group's traits as a profile keyed by `groupId`, in the namespace of
user ids (a group id equal to a user id merges them); trackgate sends the group as it is.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from gateway.adapter import (
    EVENT_TYPES,
    NO_JSON,
    Alias,
    BaseEvent,
    BatchLimits,
    Decoded,
    Group,
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
    is_empty,
    obj,
    pack_json_batches,
    raw,
    type_of,
)

# ---- source half -------------------------------------------------------------------

PREFIX = "/api/public/apps/"
_SINGLE = ("identify", "track", "page", "screen", "group")
ROUTES = tuple(PREFIX + name for name in (*_SINGLE, "alias", "batch"))
# Dittofeed's own limits (apiBodyLimit, 5 MiB; none per event) for sources without `limits:`:
# its Node SDK does not retry, so a batch refused for size is a batch lost.
DEFAULT_LIMITS = SourceLimits(max_event_bytes=5 * 1024 * 1024, max_request_bytes=5 * 1024 * 1024, max_events=10_000)
EMPTY_REQUEST_OK = True  # `{"batch":[]}` is a 204 in Dittofeed
BATCH_TYPES = _SINGLE  # Dittofeed's BatchItem union: no alias
EXTENSION = "Tranthor"  # integrations.Tranthor carries `files` and `assigned`
_JSON_TYPES = ("application/json", "text/plain")  # Fastify's default parsers
_OBJECT = ord("{")
_NULL = ord("n")


class _Item(msgspec.Struct):
    """One message as sent: scalars as any JSON (checked by hand, to name the problem),
    free-form objects as raw JSON (passed through)."""

    type: Any = None
    messageId: Any = None
    userId: Any = None
    anonymousId: Any = None
    timestamp: Any = None
    event: Any = None
    name: Any = None
    category: Any = None
    groupId: Any = None
    assigned: Any = msgspec.UNSET
    files: msgspec.Raw = NO_JSON
    properties: msgspec.Raw = NO_JSON
    traits: msgspec.Raw = NO_JSON
    context: msgspec.Raw = NO_JSON
    integrations: msgspec.Raw = NO_JSON


class _Envelope(msgspec.Struct):
    batch: list[msgspec.Raw] | None = None
    context: msgspec.Raw = NO_JSON


_decode_item = msgspec.json.Decoder(_Item).decode
_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class _Invalid(Exception):
    """One item refused: `code` for trackgate, `field` and a Fastify-like `message`."""

    def __init__(self, code: str, field: str, message: str):
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


def decode(request: InboundRequest, limits: SourceLimits) -> Decoded:
    """A Tranthor/Dittofeed request -> canonical events; any invalid item refuses it all."""
    kind = _kind(request.path)
    if kind == "alias":
        raise IngestError(400, "alias_not_implemented", "Not yet implemented.")
    _check_content_type(request.headers.get("content-type", ""))
    key = _key(request.headers)
    _check_utf8(request.body)
    if kind == "batch":
        items, batch_context = _batch(request.body, limits)
    else:
        items, batch_context = [(kind, request.body)], None
    events, rejects = [], []
    for index, (item_kind, item) in enumerate(items):
        where = f"body/batch/{index}" if kind == "batch" else "body"
        try:
            if len(item) > limits.max_event_bytes:
                limit = limits.max_event_bytes
                raise _Invalid("event_too_large", "", f"{where} is {len(item)} bytes; at most {limit}")
            events.append(_event(item, item_kind, where, batch_context))
        except _Invalid as problem:
            rejects.append(Reject(index, problem.code, problem.message, bytes(item), problem.field))
    return Decoded(key, events, rejects, atomic=True)


def _kind(path: str) -> str:
    name = path.rstrip("/").removeprefix(PREFIX)
    if name not in (*_SINGLE, "alias", "batch") or not path.startswith(PREFIX):
        raise IngestError(404, "not_found", f"Route POST:{path} not found")
    return name


def _check_content_type(header: str) -> None:
    media = header.split(";")[0].strip().lower()
    if media and media not in _JSON_TYPES:
        raise IngestError(415, "unsupported_media_type", f"Unsupported Media Type: {media}")


def _key(headers) -> str | None:
    """The token after `authorization`'s scheme word, else `PublicWriteKey`'s token."""
    _, _, token = headers.get("authorization", "").strip().partition(" ")
    if token.strip():
        return token.strip()
    scheme, _, token = headers.get("publicwritekey", "").strip().partition(" ")
    return token.strip() or scheme or None  # this header may hold the bare token


def _check_utf8(body: bytes) -> None:
    if not body.strip():
        message = "Body cannot be empty when content-type is set to 'application/json'"  # Fastify's
        raise IngestError(400, "empty_body", message)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise IngestError(400, "invalid_json", "body is not valid UTF-8") from None


def _batch(body: bytes, limits: SourceLimits) -> tuple[list[tuple[None, msgspec.Raw]], dict | None]:
    try:
        envelope = _decode_envelope(body)
    except msgspec.ValidationError as error:
        problem = "body/batch must be array" if "$.batch" in str(error) else "body must be object"
        raise IngestError(400, "invalid_batch", problem) from None
    except msgspec.DecodeError as error:
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise IngestError(400, "too_deeply_nested", "body: nested too deeply") from None
    if envelope.batch is None:
        raise IngestError(400, "invalid_batch", "body must have required property 'batch'")
    count = len(envelope.batch)
    if count > limits.max_events:
        message = f"body/batch has {count} items; at most {limits.max_events}"
        raise IngestError(400, "too_many_events", message)
    context = envelope.context
    if context and memoryview(context)[0] not in (_OBJECT, _NULL):
        raise IngestError(400, "invalid_batch", "body/context must be object")
    return [(None, item) for item in envelope.batch], (obj(context) or None)


def _event(item: msgspec.Raw | bytes, kind: str | None, where: str, context: dict | None) -> BaseEvent:
    """One message as a canonical event; `kind` None: a batch item, its `type` decides."""
    try:
        fields = _decode_item(item)
    except msgspec.ValidationError:
        raise _Invalid("invalid_event", "", f"{where} must be object") from None
    except msgspec.DecodeError as error:  # a single-event body that is not JSON
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise IngestError(400, "too_deeply_nested", "body: nested too deeply") from None
    kind = kind or _batch_type(fields.type, where)
    event = EVENT_TYPES[kind](
        message_id=_message_id(fields.messageId, where),
        user_id=_string(fields.userId, where, "userId") or None,
        anonymous_id=_string(fields.anonymousId, where, "anonymousId") or None,
        original_timestamp=_timestamp(fields.timestamp, where),
        context=_context(_object(fields.context, where, "context"), context),
    )
    if not (event.user_id or event.anonymous_id):
        message = f"{where} must have required property 'userId' or 'anonymousId'"
        raise _Invalid("missing_identifier", "userId", message)
    extension = _KIND_FIELDS[kind](event, fields, where)
    event.integrations = _with_extension(_object(fields.integrations, where, "integrations"), extension)
    return event


def _batch_type(value: Any, where: str) -> str:
    if value is None:
        raise _Invalid("invalid_type", "type", f"{where} must have required property 'type'")
    if value not in BATCH_TYPES:
        raise _Invalid("invalid_type", "type", f"{where}/type must be one of {', '.join(BATCH_TYPES)}")
    return value


def _string(value: Any, where: str, field: str) -> str | None:
    """A string field, with Fastify's coercion of integers and booleans."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise _Invalid("invalid_field", field, f"{where}/{field} must be string")


def _required(value: Any, where: str, field: str, code: str) -> str:
    text = _string(value, where, field)
    if not text:
        raise _Invalid(code, field, f"{where} must have required property '{field}'")
    return text


def _message_id(value: Any, where: str) -> str | None:
    if value is None:
        message = f"{where} must have required property 'messageId'"
        raise _Invalid("missing_message_id", "messageId", message)
    return _string(value, where, "messageId") or None  # "" -> the engine generates one


def _timestamp(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return canonical_time(value)
    except (ValueError, OverflowError):
        message = f"{where}/timestamp must be an ISO 8601 date-time"
        raise _Invalid("invalid_timestamp", "timestamp", message) from None


def _object(value: msgspec.Raw, where: str, field: str) -> msgspec.Raw:
    if not value:
        return NO_JSON
    first = memoryview(value)[0]
    if first == _OBJECT:
        return value
    if first == _NULL:
        return NO_JSON
    raise _Invalid("invalid_field", field, f"{where}/{field} must be object")


def _context(context: msgspec.Raw, batch_context: dict | None) -> msgspec.Raw:
    if not batch_context:
        return context
    return raw({**batch_context, **obj(context)})


def _identify(event: Any, fields: _Item, where: str) -> dict:
    event.traits = _object(fields.traits, where, "traits")
    return {}


def _track(event: Any, fields: _Item, where: str) -> dict:
    event.event = _required(fields.event, where, "event", "missing_event")
    event.properties = _object(fields.properties, where, "properties")
    return {} if is_empty(fields.files) else {"files": _files(fields.files, where)}


def _page(event: Any, fields: _Item, where: str) -> dict:
    event.name = _string(fields.name, where, "name") or None
    event.category = _string(fields.category, where, "category") or None
    event.properties = _object(fields.properties, where, "properties")
    return {}


def _group(event: Any, fields: _Item, where: str) -> dict:
    event.group_id = _required(fields.groupId, where, "groupId", "missing_group_id")
    event.traits = _object(fields.traits, where, "traits")
    if fields.assigned is msgspec.UNSET or fields.assigned is None:
        return {}
    if not isinstance(fields.assigned, bool):
        raise _Invalid("invalid_field", "assigned", f"{where}/assigned must be boolean")
    return {"assigned": fields.assigned}


_KIND_FIELDS = {"identify": _identify, "track": _track, "page": _page, "screen": _page, "group": _group}
_FILE_FIELDS = ("name", "mimeType", "data")


def _files(value: msgspec.Raw, where: str) -> list:
    """Dittofeed's AppDataFiles: an array of {type: "Base64Encoded", name, mimeType, data}."""
    files = _decode_any(value)
    if not isinstance(files, list):
        raise _Invalid("invalid_field", "files", f"{where}/files must be array")
    for n, file in enumerate(files):
        if not isinstance(file, dict):
            raise _Invalid("invalid_field", "files", f"{where}/files/{n} must be object")
        if file.get("type") != "Base64Encoded":
            message = f"{where}/files/{n}/type must be equal to constant 'Base64Encoded'"
            raise _Invalid("invalid_field", "files", message)
        for name in _FILE_FIELDS:
            if not isinstance(file.get(name), str):
                raise _Invalid("invalid_field", "files", f"{where}/files/{n}/{name} must be string")
    return files


def _with_extension(integrations: msgspec.Raw, extension: dict) -> msgspec.Raw:
    """`integrations` with `extension` added under integrations.Tranthor."""
    if not extension:
        return integrations
    flags = obj(integrations)
    current = flags.get(EXTENSION)
    if current is False:  # the event never goes to Tranthor: nobody would read the fields
        return integrations
    flags[EXTENSION] = {**(current if isinstance(current, dict) else {}), **extension}
    return raw(flags)


_NO_CONTENT = Reply(204, b"", content_type="")
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}
_VALIDATION = frozenset((  # codes of what Dittofeed's schema validation refuses
    "invalid_batch", "invalid_event", "invalid_type", "invalid_field", "invalid_timestamp",
    "missing_message_id", "missing_identifier", "missing_event", "missing_group_id", "event_too_large",
))
_FASTIFY_CODES = {  # trackgate code -> the code Fastify's own error has
    "request_too_large": "FST_ERR_CTP_BODY_TOO_LARGE",
    "unsupported_media_type": "FST_ERR_CTP_INVALID_MEDIA_TYPE",
    "empty_body": "FST_ERR_CTP_EMPTY_JSON_BODY",
}


_SAMPLE_FIELDS = {
    "identify": {"traits": {"email": "test@example.com", "firstName": "Test"}},
    "track": {"event": "trackgate send", "properties": {"source": "trackgate send"}},
    "page": {"name": "Home", "properties": {"url": "https://example.com/"}},
    "screen": {"name": "Home"},
    "group": {"groupId": "trackgate-test-group", "traits": {"name": "Test Group"}},
    "alias": {"previousId": "trackgate-test-anonymous"},  # answered 400, as Dittofeed does
}


def sample_request(key: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """One call as the Dittofeed SDKs' docs show it (`trackgate send`): (path, headers, body).
    `fields` holds `type`, and userId, event and messageId (which Dittofeed requires)."""
    kind = fields.get("type", "track")
    body = {**_SAMPLE_FIELDS[kind], **{k: v for k, v in fields.items() if k != "type"}}
    if kind != "track":
        body.pop("event", None)
    headers = {"authorization": f"Basic {key}", "content-type": "application/json"}
    return PREFIX + kind, headers, msgspec.json.encode(body)


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    return _NO_CONTENT


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """Dittofeed's shapes: its controller's `{"message"}` for a bad key and for alias,
    Fastify's default error body for everything else."""
    if error.code == "alias_not_implemented":
        body: dict = {"message": "Not yet implemented."}
    elif error.status == 401:
        body = {"message": "InvalidWriteKey"}
    else:
        validation = error.rejects or error.code in _VALIDATION
        code = "FST_ERR_VALIDATION" if validation else _FASTIFY_CODES.get(error.code, error.code)
        body = {
            "statusCode": error.status,
            "code": code,
            "error": _REASONS.get(error.status, "Error"),
            "message": error.message,
        }
    after = error.retry_after_s
    headers = () if after is None else (("Retry-After", str(max(0, math.ceil(after)))),)
    return Reply(error.status, _encode(body), headers=headers)


# ---- destination half --------------------------------------------------------------

INTEGRATION_NAMES = ("Tranthor", "Dittofeed")
DEDUPES = True  # Dittofeed deduplicates on messageId when it reads events
BATCH_PATH = "/api/public/apps/batch"
MAX_EVENTS = 100  # Dittofeed's batchChunkSize: one insert per request
MAX_BODY_BYTES = 5 * 1024 * 1024  # Dittofeed's default apiBodyLimit
_ENVELOPE = len(b'{"batch":[]}')
_NAMED_ITEM = re.compile(r"^body/batch/(\d+)(?:[/ ]|$)")
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


def skip_reason(event: BaseEvent, settings: Settings) -> str | None:
    """Events Dittofeed refuses; sending one would fail its whole batch with a 400."""
    if isinstance(event, Alias):
        return "alias_unsupported"
    if not (event.user_id or event.anonymous_id):
        return "missing_identifier"
    if isinstance(event, Track) and not event.event:
        return "missing_event"
    if isinstance(event, Group) and not event.group_id:
        return "missing_group_id"
    return None


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    url = settings.base_url.rstrip("/") + BATCH_PATH
    headers = (("authorization", authorization(settings)), ("Content-Type", "application/json"))
    encoded = [_encode(_outgoing(event)) for event in events]
    requests = []
    for part in pack_json_batches(encoded, batch_limits(settings)):
        body = b'{"batch":[' + b",".join(encoded[i] for i in part) + b"]}"
        requests.append(OutboundRequest(url, body, tuple(part), headers=headers))
    return requests


_OUT_FIELDS = {  # type -> (wire name, attribute) of the type's own fields
    "identify": (("traits", "traits"),),
    "track": (("event", "event"), ("properties", "properties")),
    "page": (("name", "name"), ("category", "category"), ("properties", "properties")),
    "screen": (("name", "name"), ("category", "category"), ("properties", "properties")),
    "group": (("groupId", "group_id"), ("traits", "traits")),
    "alias": (("previousId", "previous_id"),),
}
_EXTENSION_FIELDS = {"track": ("files",), "group": ("assigned",)}


def _outgoing(event: Any) -> dict:
    kind = type_of(event)
    item: dict[str, Any] = {"messageId": event.message_id, "type": kind}
    if event.user_id:
        item["userId"] = event.user_id
    if event.anonymous_id:
        item["anonymousId"] = event.anonymous_id
    for wire, attribute in _OUT_FIELDS[kind]:
        value = getattr(event, attribute)
        if value is not None and not (isinstance(value, msgspec.Raw) and is_empty(value)):
            item[wire] = value
    integrations, extras = _take_extension(event.integrations, _EXTENSION_FIELDS.get(kind, ()))
    item.update(extras)
    when = event.timestamp or event.original_timestamp or event.received_at
    if when:
        item["timestamp"] = when
    if not is_empty(event.context):
        item["context"] = event.context
    if not is_empty(integrations):
        item["integrations"] = integrations
    return item


def _take_extension(integrations: msgspec.Raw, names: tuple[str, ...]) -> tuple[msgspec.Raw, dict]:
    """integrations.Tranthor's fields among `names`, and `integrations` without them."""
    if not names or is_empty(integrations):
        return integrations, {}
    flags = obj(integrations)
    extension = flags.get(EXTENSION)
    if not isinstance(extension, dict) or not any(name in extension for name in names):
        return integrations, {}
    extras = {name: extension.pop(name) for name in names if name in extension}
    if extension:
        flags[EXTENSION] = extension
    else:
        del flags[EXTENSION]
    return (raw(flags) if flags else NO_JSON), extras


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    count = len(request.events)
    status = response.status
    if 200 <= status < 300:
        return [Verdict("delivered")] * count
    detail = response.body[:300].decode("utf-8", "replace")
    code = f"http_{status}"
    if status == 401:
        return [Verdict("pause", code, detail=detail)] * count
    if status == 400:
        return _bad_request(response.body, count, detail)
    if status == 413:
        return [Verdict("split" if count > 1 else "dead", code, detail=detail)] * count
    verdict = http_verdict(status, response.headers)
    return [Verdict(verdict.status, verdict.code, verdict.retry_after_s, detail)] * count


def _bad_request(body: bytes, count: int, detail: str) -> list[Verdict]:
    """Fastify names the first invalid item (`body/batch/3/...`): only it is dead, the
    others go again. Without a name every event of the request is dead."""
    dead = Verdict("dead", "http_400", detail=detail)
    try:
        message = _decode_any(body).get("message", "")
    except (msgspec.DecodeError, AttributeError):
        message = ""
    named = _NAMED_ITEM.match(message) if isinstance(message, str) else None
    index = int(named.group(1)) if named else -1
    if count < 2 or not 0 <= index < count:
        return [dead] * count
    others = Verdict("resend", "http_400", detail=f"not at fault: {detail}")
    return [dead if n == index else others for n in range(count)]
