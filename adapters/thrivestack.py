"""ThriveStack's telemetry API both ways: the dialect its clients post in, and ThriveStack as a destination.

Facts: ThriveStack's public API pages (api/{identify,track,group}, "Last updated: March 23,
2026") and its docs' LLM guidance file. No ThriveStack SDK could be installed to capture its
traffic, so the wire format is the documented one.

Source half: `POST /api/identify`, `/api/track`, `/api/group`, the API key in `x-api-key` (the
legacy `Authorization: Bearer` JWT is not taken), the body a JSON array of one or more objects
(a single object is refused: the docs say array).
ThriveStack refuses a whole request for one bad item, so decode marks the result atomic: any
reject turns the whole request into a 400 that names the item and field. Replies:
`200 {"success":true,"eventId":"evt_<digest of the request>"}`; errors as
`{"success":false,"error":<code>,"message":...}` (ThriveStack documents no error body, only the
statuses): 400 invalid JSON / not an array / a missing `user_id`, `event_name` or `group_id`,
401 a bad key, 413 too large, 429 under back-pressure (with Retry-After).

Destination half: arrays POSTed to `{base_url}/identify`, `/group`, `/track` with `x-api-key`,
identify and group requests before track (ThriveStack's documented call order). Page -> track
`page_visit`; screen -> track `screen_viewed` (both names are settings); alias and events
without a userId are skipped and counted (`skipped_alias_unsupported`,
`skipped_missing_user_id`). Verdicts: 2xx delivered; 401/403 pause the destination (the key is
wrong: retrying cannot help); a 400 of several events splits the array in halves until the bad
item is alone (ThriveStack names no index; the split ends at single events, so at most 2n-1
requests for n events), a 400 of one event is dead; 413 splits; 408/429/5xx (not 501) retry,
honouring Retry-After. ThriveStack has no idempotency key (DEDUPES = False): a retry after a
timeout or 5xx may duplicate, so the default retry budget is small (DEFAULT_RETRY).

Mapping (canonical = Segment Spec):
- `user_id` <-> `userId`; `group_id` <-> `groupId`; `event_name` <-> `event`, kept as sent
  (`signed_up` stays `signed_up`; out, Segment B2B names such as `Signed Up` become `signed_up`
  when `b2b_event_names` is on, the default); `timestamp` <-> `originalTimestamp` (out: the
  skew-corrected `timestamp`).
- `context.group_id` <-> `context.groupId`, `context.device_id` <-> `context.device.id`,
  `context.session_id` <-> `context.sessionId`, `context.source` <-> `context.source`.
- identify traits `user_email`, `user_name`, `first_name`, `last_name`, `created_at` <->
  `email`, `name`, `firstName`, `lastName`, `createdAt`; group traits `account_name`,
  `created_at` <-> `name`, `createdAt`. Other traits (`phone`, `plan`, `group_type`,
  `account_domain`, custom ones) keep their names.
- track `page_visit` <-> a page: `page_url`, `page_path`, `page_referrer`, `page_title` <->
  properties `url`, `path`, `referrer`, `title`; `page_name`/`page_category` (trackgate's own
  custom properties) <-> the page's `name`/`category`.
- `utm_source|medium|campaign|term|content` are copied to `context.campaign.{source, medium,
  name, term, content}` and stay in properties; on a track `page_*` are copied to
  `context.page.*` too. Out, each is added back from the context where properties lack it.
- messageId: kept when the item carries `messageId`/`message_id`; otherwise derived from the
  API key, the path and the item's JSON (keys sorted), so a client's resend of the same array
  is deduplicated. An item without `timestamp` also mixes in its position in the array, so
  identical items of one request stay distinct.

Lossy conversions, in (ThriveStack request -> canonical):
- Item fields outside ThriveStack's documented ones are dropped (`properties` on identify or
  group, `traits` on track, any other top-level key); context keys other than the four above
  pass through unchanged.
- A reserved name and its canonical twin in one object (`user_email` and `email`): the
  reserved name's value wins, the twin's value is lost. Only lower-case reserved names are
  renamed (ThriveStack calls group trait names case-insensitive).
- Times are rewritten as ISO 8601 UTC with milliseconds and "Z" (sub-ms digits and offsets go).
- Identical items with the same `timestamp` are one event (the same derived messageId): a
  second one within the dedupe window is acknowledged, not stored (ThriveStack's own guidance
  offsets events of one handler by 1 ms for the same reason). The same holds for identical
  items without `timestamp` at the same position of two requests: a client cannot tell a
  resend from a repeat without a time, and the dedupe of resends is what keeps retries safe.
- A `page_visit` item loses its event name (it becomes a page; out it is `page_event_name`).

Lossy conversions, out (canonical -> ThriveStack):
- messageId, anonymousId (sent as `context.device_id` only when `context.device.id` is
  absent), sentAt, receivedAt, originalTimestamp, integrations and trackgate's source name.
- Every context key but groupId, device.id, sessionId and source (ip, userAgent, library,
  locale, os, app, ...): ThriveStack documents only those four.
- A page's properties are renamed (`url` -> `page_url`, ...); a screen becomes a track named
  `screen_event_name` with `screen_name`/`screen_category` properties: it comes back as a track.
- A group's `context.group_id` is always its groupId (ThriveStack's rule), whatever the
  canonical `context.groupId` said.
- Alias and events without userId are not sent (skipped and counted).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgspec

from gateway.adapter import (
    NO_JSON,
    BatchLimits,
    Decoded,
    Group,
    Identify,
    InboundRequest,
    IngestError,
    OutboundRequest,
    Page,
    Reject,
    Reply,
    Response,
    Screen,
    SourceLimits,
    Track,
    Verdict,
    canonical_time,
    http_verdict,
    obj,
    pack_json_batches,
    raw,
    type_of,
)

# ---- vocabulary ----------------------------------------------------------------------

USER_TRAITS = {"user_email": "email", "user_name": "name", "first_name": "firstName",
               "last_name": "lastName", "created_at": "createdAt"}
GROUP_TRAITS = {"account_name": "name", "created_at": "createdAt"}
PAGE_PROPERTIES = {"page_url": "url", "page_path": "path", "page_referrer": "referrer", "page_title": "title"}
UTM_PROPERTIES = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "name",
                  "utm_term": "term", "utm_content": "content"}
CONTEXT_KEYS = {"group_id": "groupId", "session_id": "sessionId", "source": "source"}  # + device_id
PAGE_VISIT = "page_visit"
# Segment's B2B SaaS Spec names -> ThriveStack's standard events (vendor-apis.md 4.2).
B2B_EVENTS = {
    "Signed Up": "signed_up", "Account Created": "account_created",
    "Account Added User": "account_added_user", "Invite Sent": "invite_sent",
    "Signed In": "signed_in", "Signed Out": "signed_out", "Account Deleted": "account_deleted",
    "Account Removed User": "account_removed_user", "Trial Started": "trial_started",
    "Trial Ended": "trial_ended",
}
MAX_MESSAGE_ID = 100


def _invert(mapping: dict[str, str]) -> dict[str, str]:
    return {canonical: vendor for vendor, canonical in mapping.items()}


def rename(fields: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`fields` with the keys in `names` renamed, in order; a renamed key wins over a key
    that already has the new name."""
    shadowed = {names[key] for key in fields if key in names}
    renamed = {}
    for key, value in fields.items():
        target = names.get(key)
        if target is not None:
            renamed[target] = value
        elif key not in shadowed:
            renamed[key] = value
    return renamed


# ---- source half ---------------------------------------------------------------------

_KINDS = {"/api/identify": "identify", "/api/track": "track", "/api/group": "group"}
ROUTES = tuple(_KINDS)
_REQUIRED = {  # kind -> the fields ThriveStack requires, in the order its docs list them
    "identify": (("user_id", "missing_user_id"),),
    "track": (("event_name", "missing_event_name"), ("user_id", "missing_user_id")),
    "group": (("group_id", "missing_group_id"), ("user_id", "missing_user_id")),
}
_OBJECTS = {"identify": ("traits", "context"), "track": ("properties", "context"), "group": ("traits", "context")}

_decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_object = msgspec.json.Decoder(dict).decode
_encode = msgspec.json.Encoder().encode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


class _Invalid(Exception):
    def __init__(self, code: str, message: str, field: str = ""):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def decode(request: InboundRequest, limits: SourceLimits) -> Decoded:
    """A ThriveStack request -> canonical events; any bad item refuses the whole request."""
    kind = _KINDS.get(request.path.rstrip("/"))
    if kind is None:
        raise IngestError(404, "not_found", f"no ThriveStack endpoint at {request.path}")
    key = request.headers.get("x-api-key", "").strip() or None
    items = _items(request.body, limits)
    events, rejects = [], []
    for index, item in enumerate(items):
        try:
            events.append(_event(kind, item, key, index, limits))
        except _Invalid as problem:
            rejects.append(Reject(index, problem.code, f"[{index}] {problem.message}", bytes(item), problem.field))
    return Decoded(key, events, rejects, atomic=True)


def _items(body: bytes, limits: SourceLimits) -> list[msgspec.Raw]:
    try:
        items = _decode_items(body)
    except msgspec.ValidationError:
        raise IngestError(400, "invalid_body", "body: must be a JSON array of objects") from None
    except msgspec.DecodeError as error:
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise IngestError(400, "too_deeply_nested", "body: nested too deeply") from None
    if len(items) > limits.max_events:
        raise IngestError(400, "too_many_events", f"{len(items)} items; at most {limits.max_events}")
    return items


def _fields(item: msgspec.Raw, limits: SourceLimits) -> dict[str, Any]:
    if len(item) > limits.max_event_bytes:
        raise _Invalid("event_too_large", f"item is {len(item)} bytes; at most {limits.max_event_bytes}")
    try:
        return _decode_object(item)
    except msgspec.ValidationError:
        raise _Invalid("invalid_event", "item: must be a JSON object") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise _Invalid("invalid_event", f"item: not valid JSON: {error}") from None
    except RecursionError:
        raise _Invalid("too_deeply_nested", "item: nested too deeply") from None


def _event(kind: str, item: msgspec.Raw, key: str | None, index: int, limits: SourceLimits):
    fields = _fields(item, limits)
    required = {name: _required(fields, name, code) for name, code in _REQUIRED[kind]}
    traits_or_properties, context = (_object(fields, name) for name in _OBJECTS[kind])
    when = _timestamp(fields.get("timestamp"))
    message_id = _message_id(fields) or _derived_id(kind, key, fields, when, index)
    common = {"message_id": message_id, "user_id": required["user_id"], "original_timestamp": when}
    context = context_in(context)
    if kind == "identify":
        return Identify(**common, traits=_raw(rename(traits_or_properties, USER_TRAITS)), context=_raw(context))
    if kind == "group":
        traits = _raw(rename(traits_or_properties, GROUP_TRAITS))
        return Group(**common, group_id=required["group_id"], traits=traits, context=_raw(context))
    return _track_in(required["event_name"], traits_or_properties, context, common)


def _track_in(name: str, properties: dict, context: dict, common: dict):
    campaign = {target: properties[key] for key, target in UTM_PROPERTIES.items() if key in properties}
    if campaign:
        context["campaign"] = {**_dict(context.get("campaign")), **campaign}
    if name == PAGE_VISIT:
        properties = rename(properties, PAGE_PROPERTIES)
        page_name, category = properties.pop("page_name", None), properties.pop("page_category", None)
        return Page(**common, name=_text(page_name), category=_text(category),
                    properties=_raw(properties), context=_raw(context))
    page = {target: properties[key] for key, target in PAGE_PROPERTIES.items() if key in properties}
    if page:
        context["page"] = {**_dict(context.get("page")), **page}
    return Track(**common, event=name, properties=_raw(properties), context=_raw(context))


def context_in(context: dict[str, Any]) -> dict[str, Any]:
    """ThriveStack's context keys under their canonical names (theirs win over twins)."""
    if not context:
        return context
    out = rename({k: v for k, v in context.items() if k != "device_id"}, CONTEXT_KEYS)
    if "device_id" in context:
        out["device"] = {**_dict(out.get("device")), "id": context["device_id"]}
    return out


def _required(fields: dict, name: str, code: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        raise _Invalid(code, f"{name}: required", name)
    if not isinstance(value, str):
        raise _Invalid("invalid_field", f"{name}: must be a string", name)
    return value


def _object(fields: dict, name: str) -> dict:
    value = fields.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid("invalid_field", f"{name}: must be an object", name)
    return value


def _timestamp(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return canonical_time(value)
        except (ValueError, OverflowError):
            pass
    raise _Invalid("invalid_timestamp", "timestamp: must be an ISO 8601 time", "timestamp")


def _message_id(fields: dict) -> str | None:
    for name in ("messageId", "message_id"):
        value = fields.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > MAX_MESSAGE_ID:
            raise _Invalid("invalid_message_id", f"{name}: a string of at most {MAX_MESSAGE_ID} chars", name)
        return value
    return None


def _derived_id(kind: str, key: str | None, fields: dict, when: str | None, index: int) -> str:
    """Deterministic per item, so a client's resend of the same array dedupes. Without a
    timestamp, identical items of one array are told apart by their position."""
    digest = hashlib.sha256(f"{kind}\0{key or ''}\0".encode())
    digest.update(_encode_sorted(fields))
    if when is None:
        digest.update(f"\0#{index}".encode())
    return "thrivestack-" + digest.hexdigest()[:32]


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _raw(value: dict) -> msgspec.Raw:
    return raw(value) if value else NO_JSON


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    """ThriveStack's 200, with an eventId derived from the request (one per request: which
    id ThriveStack returns for several items is undocumented)."""
    digest = hashlib.sha256(request.path.encode() + b"\0" + request.body).hexdigest()[:24]
    return Reply(200, b'{"success":true,"eventId":"evt_' + digest.encode() + b'"}')


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """ThriveStack documents the statuses (400, 401, 429, 500), not the error body: this one
    follows its success shape. Back-pressure is its 429, as for a rate limit."""
    status, code, message = error.status, error.code, error.message
    if status == 401:
        code, message = "invalid_api_key", "Unauthorized: invalid or missing API key (x-api-key)"
    elif code == "backpressure":
        status = 429
    body: dict[str, Any] = {"success": False, "error": code, "message": message}
    if error.rejects:
        body["errors"] = [
            {"index": r.index, "field": r.field, "code": r.code, "message": r.message} for r in error.rejects
        ]
    after = error.retry_after_s
    headers = () if after is None else (("Retry-After", str(max(0, math.ceil(after)))),)
    return Reply(status, _encode(body), headers=headers)


def sample_request(key: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """One ThriveStack call (`trackgate send`): page -> track `page_visit`; screen and alias,
    which ThriveStack lacks, -> track."""
    kind = fields.get("type", "track")
    item: dict[str, Any] = {"user_id": fields.get("userId", "trackgate-test-user")}
    if kind == "identify":
        path, item["traits"] = "/api/identify", {"user_email": "test@example.com", "first_name": "Test"}
    elif kind == "group":
        path, item["group_id"] = "/api/group", "trackgate-test-group"
        item["traits"] = {"account_name": "Test Group", "group_type": "Account"}
    elif kind == "page":
        path, item["event_name"] = "/api/track", PAGE_VISIT
        item["properties"] = {"page_url": "https://example.com/", "page_path": "/"}
    else:
        path, item["event_name"] = "/api/track", fields.get("event") or "feature_used"
        item["properties"] = {"feature_name": "trackgate send"}
    if fields.get("messageId"):
        item["messageId"] = fields["messageId"]
    headers = {"x-api-key": key, "content-type": "application/json", "accept": "*/*"}
    return path, headers, _encode([item])


# ---- destination half ----------------------------------------------------------------

INTEGRATION_NAMES = ("ThriveStack", "Thrivestack")
DEDUPES = False  # no messageId/insert_id in ThriveStack's API: a retry may duplicate
# Small, because every retry after a timeout or 5xx may duplicate: typically 5-8 tries in
# about two minutes (longer when a 429's Retry-After asks), then the dead-letter queue, which
# replays. ThriveStack's own backend guidance is fire-and-forget (vendor-apis.md 4.3); a
# destination's `retry:` block overrides any of these.
DEFAULT_RETRY = {"max_attempts": 5, "max_age_s": 120.0, "backoff_base_s": 5.0, "backoff_max_s": 60.0}
_ENDPOINTS = ("identify", "group", "track")  # ThriveStack's documented call order
_USER_TRAITS_OUT = _invert(USER_TRAITS)
_GROUP_TRAITS_OUT = _invert(GROUP_TRAITS)
_PAGE_OUT = _invert(PAGE_PROPERTIES)
_UTM_OUT = _invert(UTM_PROPERTIES)
_ENVELOPE = len(b"[]")


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


def skip_reason(event: Any, settings: Settings) -> str | None:
    """What ThriveStack cannot take: alias (no equivalent) and anything without a userId
    (required on every call)."""
    if type_of(event) == "alias":
        return "alias_unsupported"
    if not event.user_id:
        return "missing_user_id"
    return None


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    """One array per endpoint (split by the limits): identify, then group, then track."""
    rows: dict[str, list[tuple[int, bytes]]] = {endpoint: [] for endpoint in _ENDPOINTS}
    for index, event in enumerate(events):
        if skip_reason(event, settings) is None:
            endpoint, item = outgoing(event, settings)
            rows[endpoint].append((index, _encode(item)))
    limits = batch_limits(settings)
    headers = (("x-api-key", settings.api_key), ("Content-Type", "application/json"), ("Accept", "*/*"))
    base = settings.base_url.rstrip("/")
    requests = []
    for endpoint in _ENDPOINTS:
        encoded = [item for _, item in rows[endpoint]]
        for part in pack_json_batches(encoded, limits, envelope=_ENVELOPE):
            body = b"[" + b",".join(encoded[i] for i in part) + b"]"
            indexes = tuple(rows[endpoint][i][0] for i in part)
            requests.append(OutboundRequest(f"{base}/{endpoint}", body, indexes, headers=headers))
    return requests


def outgoing(event: Any, settings: Settings) -> tuple[str, dict[str, Any]]:
    """(endpoint, ThriveStack item) of one canonical event that `skip_reason` lets through."""
    context = obj(event.context)
    kind = type_of(event)
    if kind == "identify":
        item = {"user_id": event.user_id, "traits": rename(obj(event.traits), _USER_TRAITS_OUT)}
        return "identify", _finish(item, event, context_out(event, context))
    if kind == "group":
        item = {"group_id": event.group_id, "user_id": event.user_id,
                "traits": rename(obj(event.traits), _GROUP_TRAITS_OUT)}
        return "group", _finish(item, event, context_out(event, context, group_id=event.group_id))
    properties = obj(event.properties)
    if kind == "page":
        name, properties = settings.page_event_name, _page_properties(event, properties)
    elif kind == "screen":
        name, properties = settings.screen_event_name, _screen_properties(event, properties)
    else:
        name = event.event or ""
        name = B2B_EVENTS.get(name, name) if settings.b2b_event_names else name
    _add_missing(properties, _dict(context.get("page")), _PAGE_OUT)
    _add_missing(properties, _dict(context.get("campaign")), _UTM_OUT)
    item = {"event_name": name, "user_id": event.user_id, "properties": properties}
    return "track", _finish(item, event, context_out(event, context))


def _page_properties(event: Page, properties: dict) -> dict:
    properties = rename(properties, _PAGE_OUT)
    if event.name:
        properties.setdefault("page_name", event.name)
    if event.category:
        properties.setdefault("page_category", event.category)
    return properties


def _screen_properties(event: Screen, properties: dict) -> dict:
    if event.name:
        properties.setdefault("screen_name", event.name)
    if event.category:
        properties.setdefault("screen_category", event.category)
    return properties


def _add_missing(properties: dict, source: dict, names: dict[str, str]) -> None:
    for canonical, vendor in names.items():
        value = source.get(canonical)
        if value is not None and vendor not in properties:
            properties[vendor] = value


def context_out(event: Any, context: dict, group_id: str | None = None) -> dict[str, Any]:
    """ThriveStack's four context keys from the canonical context (anonymousId stands in
    for a missing device id)."""
    out = {}
    group_id = group_id or context.get("groupId")
    if group_id is not None:
        out["group_id"] = group_id
    device_id = _dict(context.get("device")).get("id") or event.anonymous_id
    if device_id is not None:
        out["device_id"] = device_id
    for canonical, vendor in (("sessionId", "session_id"), ("source", "source")):
        if context.get(canonical) is not None:
            out[vendor] = context[canonical]
    return out


def _finish(item: dict, event: Any, context: dict) -> dict:
    for name in ("traits", "properties"):
        if name in item and not item[name]:
            del item[name]
    if context:
        item["context"] = context
    when = event.timestamp or event.original_timestamp or event.received_at
    if when:
        item["timestamp"] = when
    return item


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    verdict = _verdict(response, len(request.events))
    return [verdict] * len(request.events)


def _verdict(response: Response, count: int) -> Verdict:
    status = response.status
    if 200 <= status < 300:
        return Verdict("delivered")
    code, detail = f"http_{status}", response.body[:300].decode("utf-8", "replace")
    if status in (401, 403):
        why = "ThriveStack refused the API key (x-api-key): fix settings.api_key, then restart"
        return Verdict("pause", code, detail=f"{why}. {detail}".strip())
    if status in (400, 413):  # no index in ThriveStack's 400: halve until the bad item is alone
        return Verdict("split" if count > 1 else "dead", code, detail=detail)
    base = http_verdict(status, response.headers)
    return Verdict(base.status, code, retry_after_s=base.retry_after_s, detail=detail)
