"""One valid Amplitude event -> its canonical event; what the Spec cannot hold stays verbatim."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.adapter import NO_JSON, Group, Identify, Track, format_ms, raw

from .fields import CONTEXT, EXTRAS, GROUP_IDENTIFY, IDENTIFY, ORIGIN, group_id


def to_canonical(fields: dict, message_id: str, sent_at: str | None, client_ip: str | None):
    """`fields` (checked, nulls dropped) -> identify, group or track. Consumes `fields`."""
    event_type = fields.pop("event_type")
    user_id, device_id = fields.pop("user_id", None), fields.pop("device_id", None)
    fields.pop("insert_id", None)
    when = fields.pop("time", None)
    context = _context_in(fields, client_ip)
    extras: dict[str, Any] = {ORIGIN: True}
    common = {
        "message_id": message_id,
        "user_id": user_id,
        "anonymous_id": device_id,
        "original_timestamp": None if when is None else format_ms(when),
        "sent_at": sent_at if when is not None else None,
    }
    if event_type == GROUP_IDENTIFY:
        traits, ops = _split_operations(fields.pop("group_properties", None))
        _keep(extras, "group_properties", ops)
        event = Group(group_id=group_id(fields.get("groups")), traits=_raw_or_none(traits), **common)
    else:
        traits, ops = _split_operations(fields.pop("user_properties", None))
        _keep(extras, "user_properties", ops)
        group = group_id(fields.get("groups"))
        if group is not None:
            context["groupId"] = group
        if event_type == IDENTIFY:
            event = Identify(traits=_raw_or_none(traits), **common)
        else:
            if traits is not None:
                context["traits"] = traits
            properties = fields.pop("event_properties", None)
            event = Track(event=event_type, properties=_raw_or_none(properties), **common)
    extras.update(fields)  # what the Spec cannot hold, verbatim
    event.context = raw(context) if context else NO_JSON
    event.integrations = raw({EXTRAS: extras})
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
    for name, path in CONTEXT.items():
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
