"""ThriveStack requests in: the JSON array, each item's checks, and the canonical event it becomes."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from gateway.adapter import (
    NO_JSON,
    Decoded,
    Group,
    Identify,
    InboundRequest,
    IngestError,
    Page,
    Reject,
    SourceLimits,
    Track,
    canonical_time,
    raw,
)

from .fields import (
    CONTEXT_KEYS,
    GROUP_TRAITS,
    PAGE_PROPERTIES,
    PAGE_VISIT,
    USER_TRAITS,
    UTM_PROPERTIES,
    as_dict,
    rename,
)

_KINDS = {"/api/identify": "identify", "/api/track": "track", "/api/group": "group"}
ROUTES = tuple(_KINDS)
_REQUIRED = {  # kind -> the fields ThriveStack requires, in the order its docs list them
    "identify": (("user_id", "missing_user_id"),),
    "track": (("event_name", "missing_event_name"), ("user_id", "missing_user_id")),
    "group": (("group_id", "missing_group_id"), ("user_id", "missing_user_id")),
}
_OBJECTS = {"identify": ("traits", "context"), "track": ("properties", "context"), "group": ("traits", "context")}
MAX_MESSAGE_ID = 100

_decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_object = msgspec.json.Decoder(dict).decode
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
        context["campaign"] = {**as_dict(context.get("campaign")), **campaign}
    if name == PAGE_VISIT:
        properties = rename(properties, PAGE_PROPERTIES)
        page_name, category = properties.pop("page_name", None), properties.pop("page_category", None)
        return Page(**common, name=_text(page_name), category=_text(category),
                    properties=_raw(properties), context=_raw(context))
    page = {target: properties[key] for key, target in PAGE_PROPERTIES.items() if key in properties}
    if page:
        context["page"] = {**as_dict(context.get("page")), **page}
    return Track(**common, event=name, properties=_raw(properties), context=_raw(context))


def context_in(context: dict[str, Any]) -> dict[str, Any]:
    """ThriveStack's context keys under their canonical names (theirs win over twins)."""
    if not context:
        return context
    out = rename({k: v for k, v in context.items() if k != "device_id"}, CONTEXT_KEYS)
    if "device_id" in context:
        out["device"] = {**as_dict(out.get("device")), "id": context["device_id"]}
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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _raw(value: dict) -> msgspec.Raw:
    return raw(value) if value else NO_JSON
