"""One canonical event -> the Amplitude event it becomes (and a group's /groupidentify item)."""

from __future__ import annotations

import re
from typing import Any

from gateway.adapter import Group, Identify, Page, Screen, Track, epoch_ms, obj

from .fields import (
    CONTEXT,
    GROUP_IDENTIFY,
    IDENTIFY,
    INTEGRATION_NAMES,
    NUMBERS,
    ORIGIN,
    Invalid,
    check_types,
    encode_json,
)
from .settings import Settings

MAX_STRING = 1024  # Amplitude's limit on string values
MAX_DEPTH = 40  # Amplitude's limit on property nesting
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


def amplitude_event(event, settings: Settings) -> tuple[dict, dict | None]:
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
    if not ours and isinstance(event, (Track, Page, Screen)):
        _carry_context(out, context)
    return out, group


def _extras(event) -> dict:
    """The event's `integrations.Amplitude` object (or `Actions Amplitude`), else {}."""
    flags = obj(event.integrations)
    for name in INTEGRATION_NAMES:
        value = flags.get(name)
        if isinstance(value, dict):
            return value
    return {}


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
        check_types({k: v for k, v in out.items() if v is not None})
    except Invalid as problem:
        out.pop(problem.field, None)
        return _valid_extras(out, ours)
    return {k: v for k, v in out.items() if v is not None}


# ---- context -------------------------------------------------------------------------------


def _context_out(context: dict, ours: bool) -> dict:
    out: dict[str, Any] = {}
    ip = context.get("ip")
    if isinstance(ip, str) and ip:
        out["ip"] = ip
    for name, path in CONTEXT.items():
        value = context.get(path[0])
        if len(path) == 2:
            value = value.get(path[1]) if isinstance(value, dict) else None
        if value is None:
            continue
        if name in NUMBERS and type(value) in (int, float) or name not in NUMBERS and isinstance(value, str):
            out[name] = value
    library = context.get("library")
    if isinstance(library, dict) and isinstance(library.get("name"), str):
        version = library.get("version")
        out["library"] = library["name"] + (f"/{version}" if isinstance(version, str) else "")
    if not ours:
        out.update(_advertising_id(context))
    return out


# Context extensions other dialects carry (ThriveStack's session, source and account) that
# Amplitude has no field for: kept as event properties rather than dropped.
_CARRIED = ("sessionId", "source", "groupId")


def _carry_context(out: dict, context: dict) -> None:
    """A numeric context.sessionId is Amplitude's session_id (ms); any other, and the
    context's source and groupId, become event properties of the same name."""
    carried = {k: v for k in _CARRIED if isinstance(v := context.get(k), (str, int, float)) and not isinstance(v, bool)}
    session = carried.get("sessionId")
    if type(session) is int or isinstance(session, str) and session.isdigit():
        out.setdefault("session_id", int(session))
        del carried["sessionId"]
    if carried:
        properties = out.setdefault("event_properties", {})
        for key, value in carried.items():
            properties.setdefault(key, value)


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


# ---- per event type ------------------------------------------------------------------------


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


# ---- Amplitude's limits --------------------------------------------------------------------


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
    return encode_json(value).decode()[:MAX_STRING]
