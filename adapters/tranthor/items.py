"""One Tranthor message -> a canonical event, each field checked as Dittofeed's schema does."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.adapter import EVENT_TYPES, NO_JSON, BaseEvent, IngestError, canonical_time, is_empty, obj, raw

from .api import EXTENSION, decode_json

BATCH_TYPES = ("identify", "track", "page", "screen", "group")  # Dittofeed's BatchItem union: no alias
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


_decode_item = msgspec.json.Decoder(_Item).decode


class Invalid(Exception):
    """One item refused: `code` for trackgate, `field` and a Fastify-like `message`."""

    def __init__(self, code: str, field: str, message: str):
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


def item_event(item: msgspec.Raw | bytes, kind: str | None, where: str, context: dict | None) -> BaseEvent:
    """One message as a canonical event; `kind` None: a batch item, its `type` decides."""
    try:
        fields = _decode_item(item)
    except msgspec.ValidationError:
        raise Invalid("invalid_event", "", f"{where} must be object") from None
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
        context=_context(object_field(fields.context, where, "context"), context),
    )
    if not (event.user_id or event.anonymous_id):
        message = f"{where} must have required property 'userId' or 'anonymousId'"
        raise Invalid("missing_identifier", "userId", message)
    extension = _KIND_FIELDS[kind](event, fields, where)
    event.integrations = _with_extension(object_field(fields.integrations, where, "integrations"), extension)
    return event


def _batch_type(value: Any, where: str) -> str:
    if value is None:
        raise Invalid("invalid_type", "type", f"{where} must have required property 'type'")
    if value not in BATCH_TYPES:
        raise Invalid("invalid_type", "type", f"{where}/type must be one of {', '.join(BATCH_TYPES)}")
    return value


def _string(value: Any, where: str, field: str) -> str | None:
    """A string field, with Fastify's coercion of integers and booleans."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise Invalid("invalid_field", field, f"{where}/{field} must be string")


def _required(value: Any, where: str, field: str, code: str) -> str:
    text = _string(value, where, field)
    if not text:
        raise Invalid(code, field, f"{where} must have required property '{field}'")
    return text


def _message_id(value: Any, where: str) -> str | None:
    if value is None:
        message = f"{where} must have required property 'messageId'"
        raise Invalid("missing_message_id", "messageId", message)
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
        raise Invalid("invalid_timestamp", "timestamp", message) from None


def object_field(value: msgspec.Raw, where: str, field: str) -> msgspec.Raw:
    """A free-form object passed through; JSON `null` reads as absent, anything else is refused."""
    if not value:
        return NO_JSON
    first = memoryview(value)[0]
    if first == _OBJECT:
        return value
    if first == _NULL:
        return NO_JSON
    raise Invalid("invalid_field", field, f"{where}/{field} must be object")


def _context(context: msgspec.Raw, batch_context: dict | None) -> msgspec.Raw:
    if not batch_context:
        return context
    return raw({**batch_context, **obj(context)})


def _identify(event: Any, fields: _Item, where: str) -> dict:
    event.traits = object_field(fields.traits, where, "traits")
    return {}


def _track(event: Any, fields: _Item, where: str) -> dict:
    event.event = _required(fields.event, where, "event", "missing_event")
    event.properties = object_field(fields.properties, where, "properties")
    return {} if is_empty(fields.files) else {"files": _files(fields.files, where)}


def _page(event: Any, fields: _Item, where: str) -> dict:
    event.name = _string(fields.name, where, "name") or None
    event.category = _string(fields.category, where, "category") or None
    event.properties = object_field(fields.properties, where, "properties")
    return {}


def _group(event: Any, fields: _Item, where: str) -> dict:
    event.group_id = _required(fields.groupId, where, "groupId", "missing_group_id")
    event.traits = object_field(fields.traits, where, "traits")
    if fields.assigned is msgspec.UNSET or fields.assigned is None:
        return {}
    if not isinstance(fields.assigned, bool):
        raise Invalid("invalid_field", "assigned", f"{where}/assigned must be boolean")
    return {"assigned": fields.assigned}


_KIND_FIELDS = {"identify": _identify, "track": _track, "page": _page, "screen": _page, "group": _group}
_FILE_FIELDS = ("name", "mimeType", "data")


def _files(value: msgspec.Raw, where: str) -> list:
    """Dittofeed's AppDataFiles: an array of {type: "Base64Encoded", name, mimeType, data}."""
    files = decode_json(value)
    if not isinstance(files, list):
        raise Invalid("invalid_field", "files", f"{where}/files must be array")
    for n, file in enumerate(files):
        if not isinstance(file, dict):
            raise Invalid("invalid_field", "files", f"{where}/files/{n} must be object")
        if file.get("type") != "Base64Encoded":
            message = f"{where}/files/{n}/type must be equal to constant 'Base64Encoded'"
            raise Invalid("invalid_field", "files", message)
        for name in _FILE_FIELDS:
            if not isinstance(file.get(name), str):
                raise Invalid("invalid_field", "files", f"{where}/files/{n}/{name} must be string")
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
