"""Canonical events -> Tranthor's batch requests, the Tranthor-only fields put back at the top."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.adapter import (
    NO_JSON,
    Alias,
    BaseEvent,
    Group,
    OutboundRequest,
    Track,
    is_empty,
    obj,
    pack_json_batches,
    raw,
    type_of,
)

from .api import EXTENSION, PREFIX, encode_json
from .settings import Settings, authorization, batch_limits

DEDUPES = True  # Dittofeed deduplicates on messageId when it reads events
BATCH_PATH = PREFIX + "batch"
_OUT_FIELDS = {  # type -> (wire name, attribute) of the type's own fields
    "identify": (("traits", "traits"),),
    "track": (("event", "event"), ("properties", "properties")),
    "page": (("name", "name"), ("category", "category"), ("properties", "properties")),
    "screen": (("name", "name"), ("category", "category"), ("properties", "properties")),
    "group": (("groupId", "group_id"), ("traits", "traits")),
    "alias": (("previousId", "previous_id"),),
}
_EXTENSION_FIELDS = {"track": ("files",), "group": ("assigned",)}


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
    encoded = [encode_json(_outgoing(event)) for event in events]
    requests = []
    for part in pack_json_batches(encoded, batch_limits(settings)):
        body = b'{"batch":[' + b",".join(encoded[i] for i in part) + b"]}"
        requests.append(OutboundRequest(url, body, tuple(part), headers=headers))
    return requests


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
