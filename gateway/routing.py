"""Which destinations get an event: the source's routes, enabled flags, the event's own
`integrations` flags and each destination's filter. Every skip is counted."""

from __future__ import annotations

from collections import Counter
from types import ModuleType

import msgspec

from gateway.config import DestinationConfig
from gateway.event import BaseEvent, type_of

_decode_flags = msgspec.json.Decoder(dict).decode
_EMPTY = (b"", b"{}", b"null")


class DestinationRoute:
    """One destination as routing sees it."""

    __slots__ = ("name", "enabled", "names", "types", "include", "exclude", "filtered", "skip_reason", "settings")

    def __init__(self, name: str, spec: DestinationConfig, adapter: ModuleType, settings):
        self.name = name
        self.enabled = spec.enabled
        # The names an event's `integrations` may use for it: its own and its vendor's.
        self.names = tuple({name.lower(), *(n.lower() for n in adapter.INTEGRATION_NAMES)})
        self.types = frozenset(spec.filter.types)
        self.include = frozenset(spec.filter.events_include)
        self.exclude = frozenset(spec.filter.events_exclude)
        self.filtered = bool(self.types or self.include or self.exclude)
        self.skip_reason = getattr(adapter, "skip_reason", None)
        self.settings = settings

    def flag(self, flags: dict[str, object]) -> object:
        """This destination's entry in `integrations`, or None when not named."""
        for key, value in flags.items():
            if key.lower() in self.names:
                return value
        return None

    def filter_out(self, event: BaseEvent) -> bool:
        if self.types and type_of(event) not in self.types:
            return True
        name = getattr(event, "event", None) or getattr(event, "name", None)
        if self.include and name not in self.include:
            return True
        return bool(self.exclude) and name in self.exclude


def _no_flags(value) -> bool:
    """True for an absent, null or empty `integrations` object (cheap: no decoding)."""
    return len(value) <= 4 and bytes(value) in _EMPTY


def _integration_flags(event: BaseEvent) -> dict[str, object] | None:
    value = event.integrations
    if _no_flags(value):
        return None
    try:
        flags = _decode_flags(value)
    except msgspec.DecodeError:
        return None
    return flags or None


class Routes:
    """A source's destinations, with the answer precomputed for the common case: an event
    without `integrations` flags, and no destination that filters or may skip events."""

    __slots__ = ("all", "plain", "disabled")

    def __init__(self, destinations: tuple[DestinationRoute, ...]):
        self.all = destinations
        simple = all(not d.filtered and d.skip_reason is None for d in destinations if d.enabled)
        self.plain = tuple(d.name for d in destinations if d.enabled) if simple else None
        self.disabled = tuple((d.name, "skipped_disabled") for d in destinations if not d.enabled)

    def route(self, event: BaseEvent, counts: Counter) -> tuple[str, ...]:
        """The names of the destinations that get `event`; skips are added to `counts`
        as (destination, "skipped_<reason>")."""
        if self.plain is not None and _no_flags(event.integrations):
            for key in self.disabled:
                counts[key] += 1
            return self.plain
        return route(event, self.all, counts)


def route(event: BaseEvent, routes: tuple[DestinationRoute, ...], counts: Counter) -> tuple[str, ...]:
    """The general case of Routes.route."""
    flags = _integration_flags(event)
    everything = True if flags is None else bool(flags.get("All", flags.get("all", True)))
    chosen = []
    for dest in routes:
        if not dest.enabled:
            counts[(dest.name, "skipped_disabled")] += 1
            continue
        if flags is not None:
            flag = dest.flag(flags)
            wanted = everything if flag is None else flag is not False
            if not wanted:
                counts[(dest.name, "skipped_integrations")] += 1
                continue
        if dest.filtered and dest.filter_out(event):
            counts[(dest.name, "skipped_filter")] += 1
            continue
        if dest.skip_reason is not None:
            reason = dest.skip_reason(event, dest.settings)
            if reason:
                counts[(dest.name, f"skipped_{reason}")] += 1
                continue
        chosen.append(dest.name)
    return tuple(chosen)
