"""One canonical event -> the Amplitude event it becomes (and a group's /groupidentify item)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Union

import msgspec

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
_LEVELS = 10  # levels checked in C: a decoder's size doubles with each; deeper takes the walk
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


class _Context(msgspec.Struct, gc=False):
    """The keys of `context` this encoder reads (a dict's .get() of each: None when absent or
    null). Decoding only these skips the bulk of a browser's context (page, campaign, ...)."""

    ip: Any = None
    userAgent: Any = None
    locale: Any = None
    os: Any = None
    device: Any = None
    network: Any = None
    location: Any = None
    app: Any = None
    library: Any = None
    traits: msgspec.Raw = msgspec.Raw()  # decoded only when used, straight within the limits
    sessionId: Any = None
    source: Any = None
    groupId: Any = None


class _Integrations(msgspec.Struct, gc=False):
    amplitude: Any = msgspec.field(default=None, name=INTEGRATION_NAMES[0])
    actions_amplitude: Any = msgspec.field(default=None, name=INTEGRATION_NAMES[1])


_NO_CONTEXT = _Context()
_decode_context = msgspec.json.Decoder(_Context).decode
_decode_integrations = msgspec.json.Decoder(_Integrations).decode


def _context_groups() -> tuple[tuple[str, tuple[tuple[str, str | None, bool], ...]], ...]:
    """CONTEXT as (context key, ((Amplitude field, key inside or None, numeric), ...)) runs, in
    CONTEXT's order (the order the fields go out in)."""
    groups: list[tuple[str, list]] = []
    for name, path in CONTEXT.items():
        if not groups or groups[-1][0] != path[0]:
            groups.append((path[0], []))
        groups[-1][1].append((name, path[1] if len(path) == 2 else None, name in NUMBERS))
    return tuple((key, tuple(fields)) for key, fields in groups)


_CONTEXT_GROUPS = _context_groups()


def amplitude_event(event, settings: Settings) -> tuple[dict, dict | None]:
    """One canonical event -> (its Amplitude event, its /groupidentify item or None)."""
    extras = _extras(event)
    ours = extras.get(ORIGIN) is True
    context = _NO_CONTEXT if _absent(event.context) else _decode_context(event.context)
    out = _valid_extras(extras, ours) if extras else {}
    _context_out(out, context, ours)
    if event.user_id:
        out["user_id"] = event.user_id
    device = context.device
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
        _set_traits(out, "user_properties", event.traits, extras.get("user_properties"))
    elif isinstance(event, Group):
        group = _group(event, out, extras, settings, ours)
    else:  # Page, Screen
        _page(event, out, settings)
    if not ours and isinstance(event, (Track, Page, Screen)):
        _carry_context(out, context)
    return out, group


def _extras(event) -> dict:
    """The event's `integrations.Amplitude` object (or `Actions Amplitude`), else {}."""
    if _absent(event.integrations):
        return {}
    flags = _decode_integrations(event.integrations)
    for value in (flags.amplitude, flags.actions_amplitude):
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


def _context_out(out: dict, context: _Context, ours: bool) -> None:
    """Context fields Amplitude has a field for, into `out` (over what is there)."""
    ip = context.ip
    if isinstance(ip, str) and ip:
        out["ip"] = ip
    for key, fields in _CONTEXT_GROUPS:
        value = getattr(context, key)
        if value is None:
            continue
        for name, inner, numeric in fields:
            item = value if inner is None else value.get(inner) if isinstance(value, dict) else None
            if item is None:
                continue
            if type(item) in (int, float) if numeric else isinstance(item, str):
                out[name] = item
    library = context.library
    if isinstance(library, dict) and isinstance(library.get("name"), str):
        version = library.get("version")
        out["library"] = library["name"] + (f"/{version}" if isinstance(version, str) else "")
    if not ours and context.device is not None:
        out.update(_advertising_id(context))


# Context extensions other dialects carry (ThriveStack's session, source and account) that
# Amplitude has no field for: kept as event properties rather than dropped.
_CARRIED = ("sessionId", "source", "groupId")


def _carry_context(out: dict, context: _Context) -> None:
    """A numeric context.sessionId is Amplitude's session_id (ms); any other, and the
    context's source and groupId, become event properties of the same name."""
    if context.sessionId is None and context.source is None and context.groupId is None:
        return
    carried = {
        k: v for k in _CARRIED if isinstance(v := getattr(context, k), (str, int, float)) and not isinstance(v, bool)
    }
    session = carried.get("sessionId")
    if type(session) is int or isinstance(session, str) and session.isdigit():
        out.setdefault("session_id", int(session))
        del carried["sessionId"]
    if carried:
        properties = out.setdefault("event_properties", {})
        for key, value in carried.items():
            properties.setdefault(key, value)


def _advertising_id(context: _Context) -> dict:
    device, os_ = context.device, context.os
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


def _track(event, out: dict, extras: dict, context: _Context, settings: Settings, ours: bool) -> None:
    out["event_type"] = event.event or ""
    properties = None
    if event.properties:
        properties, out["event_properties"] = _decode_fitted(event.properties, 0)
    ops = extras.get("user_properties")
    if isinstance(ops, dict) and ops:
        traits = _object_or_none(context.traits)
        _set_properties(out, "user_properties", _operations(traits or {}, ops))
    elif _is_object(context.traits):
        out["user_properties"] = _decode_fitted(context.traits, 0)[1]
    if not ours and settings.revenue_from_properties and properties:
        for name, value in _revenue(properties).items():
            out.setdefault(name, value)


def _absent(value: msgspec.Raw) -> bool:
    """No JSON, or null (is_empty, without copying the bytes of every other value)."""
    return not value or len(value) == 4 and bytes(value) == b"null"


def _is_object(value: msgspec.Raw) -> bool:
    """Whether a Raw holds a JSON object (msgspec keeps no whitespace around a Raw value)."""
    return bool(value) and memoryview(value)[:1] == b"{"


def _object_or_none(value: msgspec.Raw) -> dict | None:
    """The JSON object a Raw holds, else None (null, a string, an array, ...)."""
    return obj(value) if _is_object(value) else None


def _revenue(properties: dict) -> dict:
    found: dict[str, Any] = {}
    for key, name, types in _REVENUE:
        if key in properties:
            value = properties[key]
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


def _set_traits(out: dict, name: str, traits: msgspec.Raw, kept: Any) -> None:
    """`name` = _operations(traits, kept), within the limits; without kept operations it is
    `{"$set": traits}` (or nothing for no traits), the traits decoded straight within them."""
    if isinstance(kept, dict) and kept:
        _set_properties(out, name, _operations(obj(traits), kept))
        return
    fitted = _decode_fitted(traits, 1)[1]
    if fitted:
        out[name] = {"$set": fitted}


def _set_properties(out: dict, name: str, value: dict) -> None:
    if value:
        out[name] = _fit(value)


def _group(event, out: dict, extras: dict, settings: Settings, ours: bool) -> dict | None:
    groups = extras.get("groups")
    if not isinstance(groups, dict) or not groups:
        groups = {settings.group_type: event.group_id or ""}
    if ours or not (event.user_id or event.anonymous_id):
        out["event_type"] = GROUP_IDENTIFY
        out["groups"] = groups
        _set_traits(out, "group_properties", event.traits, extras.get("group_properties"))
        return None
    out["event_type"] = IDENTIFY
    out["groups"] = groups
    out["user_properties"] = {"$set": dict(groups)}
    fitted = _decode_fitted(event.traits, 1)[1]
    if not fitted:
        return None
    group_type, group_value = next(iter(groups.items()))
    return {"group_type": group_type, "group_value": group_value, "group_properties": {"$set": fitted}}


def _page(event, out: dict, settings: Settings) -> None:
    screen = isinstance(event, Screen)
    if event.name:
        template = settings.screen_event_name if screen else settings.page_event_name
    else:
        template = settings.unnamed_screen_event_name if screen else settings.unnamed_page_event_name
    out["event_type"] = template.replace("{name}", event.name or "").replace("{category}", event.category or "")
    fitted = _decode_fitted(event.properties, 0)[1]
    for key, value in (("name", event.name), ("category", event.category)):
        if value is not None and key not in fitted:
            fitted[key] = value[:MAX_STRING] if len(value) > MAX_STRING else value  # as _fit cuts it
    if fitted or event.properties:
        out["event_properties"] = fitted


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


def _within_limits(depth: int) -> Any:
    """The type of a JSON object at `depth` that _fit leaves as it is: its strings at most
    1,024 characters, no array directly in an array, no object or array at depth 40 (nor,
    the decoder being built per level, deeper than _LEVELS below `depth`). A decoder of it
    refuses (ValidationError), in C, whatever _fit could change."""
    text = Annotated[str, msgspec.Meta(max_length=MAX_STRING)]
    scalar = (None, bool, int, float, text)
    value: Any = Union[scalar]  # at the deepest level: no object, no array
    item: Any = value  # a value directly in an array
    for _ in range(depth + 1, min(MAX_DEPTH, depth + _LEVELS)):
        value, item = Union[(*scalar, dict[str, value], list[item])], Union[(*scalar, dict[str, value])]
    return dict[str, value]


_decode_within_limits = (msgspec.json.Decoder(_within_limits(0)).decode, msgspec.json.Decoder(_within_limits(1)).decode)


def _decode_fitted(value: msgspec.Raw, depth: int) -> tuple[dict, dict]:
    """(the object a Raw holds, the same within Amplitude's limits as _fit(it, depth) gives it):
    one object when it needs no change, which is the rule and takes no walk in Python."""
    if _absent(value):
        return {}, {}
    try:
        decoded = _decode_within_limits[depth](value)
    except msgspec.ValidationError:  # something to cut, or no object: the walk (obj raises for the latter)
        decoded = obj(value)
        return decoded, _fit(decoded, depth)
    return decoded, decoded
