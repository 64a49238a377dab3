"""Amplitude's requests in: the JSON envelope or the form body, then each item's checks."""

from __future__ import annotations

import hashlib
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from gateway.adapter import NO_JSON, Decoded, InboundRequest, IngestError, Reject, SourceLimits, canonical_time

from .canonical import to_canonical
from .fields import (
    DEFAULT_MIN_ID_LENGTH,
    GROUP_IDENTIFY,
    IDENTIFY,
    Invalid,
    check_types,
    decode_json,
    decode_json_dict,
    encode_json,
    group_id,
)

EVENT_PATHS = ("/2/httpapi", "/batch")
FORM_PATHS = ("/identify", "/groupidentify")
ROUTES = EVENT_PATHS + FORM_PATHS
# Amplitude answers 400 for these ids (HTTP V2 docs, "Invalid IDs that result in a 400 error").
_INVALID_IDS = frozenset((
    "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
    "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
))


class _Envelope(msgspec.Struct):
    api_key: Any = None
    events: msgspec.Raw = NO_JSON
    options: Any = None
    client_upload_time: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode


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
    if path in EVENT_PATHS:
        key, items, shared = _event_request(request, path)
    else:
        key, items, shared = _form_request(request, path)
    if len(items) > limits.max_events:
        raise IngestError(413, "too_many_events", f"{len(items)} events; at most {limits.max_events}")
    events, rejects = [], []
    for index, item in enumerate(items):
        try:
            if len(item) > limits.max_event_bytes:
                raise Invalid("event_too_large", "event", f"event is {len(item)} bytes; at most {limits.max_event_bytes}")
            events.append(_item_event(item, index, shared))
        except Invalid as problem:
            rejects.append(Reject(index, problem.code, problem.message, bytes(item), problem.field))
    if rejects:
        return Decoded(key, [], rejects, atomic=True)
    return Decoded(key, events)


# ---- the request: envelope or form -------------------------------------------------------


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
        found = decode_json(text) if isinstance(text, (str, bytes)) else text
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise IngestError(400, "invalid_json", "identification: not valid JSON") from None
    listed = found if isinstance(found, list) else [found]
    items = [encode_json(item) for item in listed]
    options = fields.get("options")
    if isinstance(options, str):
        try:
            options = decode_json(options)
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
            fields = decode_json_dict(body)
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


# ---- each item: Amplitude's checks, then the canonical event ------------------------------


def _item_event(item: bytes, index: int, shared: _Request):
    try:
        fields = decode_json_dict(item)
    except msgspec.ValidationError:
        raise Invalid("invalid_event", "event", "event: must be a JSON object") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise Invalid("invalid_event", "event", "event: not valid JSON") from None
    fields = {k: v for k, v in fields.items() if v is not None}
    if shared.path == "/identify":
        fields["event_type"] = IDENTIFY
    elif shared.path == "/groupidentify":
        fields = _group_item(fields)
    check_types(fields)
    event_type = fields.get("event_type")
    if not event_type:
        raise Invalid("missing_field", "event_type", "event_type: required")
    _check_ids(fields, shared.min_id_length, event_type == GROUP_IDENTIFY)
    message_id = _message_id(fields, index, shared)
    return to_canonical(fields, message_id, shared.sent_at, shared.client_ip)


def _group_item(fields: dict) -> dict:
    """A /groupidentify item as the `$groupidentify` event that means the same."""
    group_type, group_value = fields.pop("group_type", None), fields.pop("group_value", None)
    for name, value in (("group_type", group_type), ("group_value", group_value)):
        if value is None or value == "":
            raise Invalid("missing_field", name, f"{name}: required")
    if not isinstance(group_type, str) or group_id(group_value) is None:
        raise Invalid("invalid_field", "group_type" if not isinstance(group_type, str) else "group_value",
                      "group_type and group_value: must be strings")
    return {**fields, "event_type": GROUP_IDENTIFY, "groups": {group_type: group_value}}


def _check_ids(fields: dict, min_length: int, groupless: bool) -> None:
    """Amplitude's id rules, in place: a placeholder id is invalid, a short one is removed."""
    short = None
    for name in ("user_id", "device_id"):
        value = fields.get(name)
        if value is None:
            continue
        if value.lower() in _INVALID_IDS:
            raise Invalid("invalid_field", name, f"{name}: {value!r} is not a valid id")
        if len(value) < min_length:
            short = short or name
            del fields[name]
    if groupless:
        if group_id(fields.get("groups")) is None:
            raise Invalid("missing_field", "groups", "groups: required on $groupidentify")
        return
    if "user_id" not in fields and "device_id" not in fields:
        if short:
            raise Invalid("invalid_id_length", short, f"{short}: shorter than min_id_length {min_length}")
        raise Invalid("missing_field", "user_id", "user_id or device_id: required")


def _message_id(fields: dict, index: int, shared: _Request) -> str:
    insert_id = fields.get("insert_id")
    if insert_id:
        return insert_id
    event_type = fields["event_type"]
    parts: list[Any] = [shared.key, fields.get("device_id"), fields.get("user_id"), event_type,
                        fields.get("time"), fields.get("event_id")]
    if shared.path in FORM_PATHS:
        parts = [shared.key, shared.path, fields]
    elif event_type in (IDENTIFY, GROUP_IDENTIFY):
        parts += [fields.get("user_properties"), fields.get("groups"), fields.get("group_properties")]
    if shared.path in FORM_PATHS or fields.get("time") is None:
        parts += [shared.received_at, index]
    return "amp-" + hashlib.sha256(encode_json(parts)).hexdigest()[:32]
