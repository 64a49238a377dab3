"""A canonical event -> its ThriveStack endpoint and item."""

from __future__ import annotations

from typing import Any

from gateway.adapter import Page, Screen, obj, type_of

from .fields import B2B_EVENTS, GROUP_TRAITS, PAGE_PROPERTIES, USER_TRAITS, UTM_PROPERTIES, as_dict, invert, rename
from .settings import Settings

_USER_TRAITS_OUT = invert(USER_TRAITS)
_GROUP_TRAITS_OUT = invert(GROUP_TRAITS)
_PAGE_OUT = invert(PAGE_PROPERTIES)
_UTM_OUT = invert(UTM_PROPERTIES)


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
    _add_missing(properties, as_dict(context.get("page")), _PAGE_OUT)
    _add_missing(properties, as_dict(context.get("campaign")), _UTM_OUT)
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
    device_id = as_dict(context.get("device")).get("id") or event.anonymous_id
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
