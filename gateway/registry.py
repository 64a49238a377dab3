"""Adapter name -> module: the built-ins, plus any installed `trackgate.adapters` entry point."""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType

BUILTIN = {
    "segment": "adapters.segment",
    "webhook": "adapters.webhook",
    "file": "adapters.file",
    "amplitude": "adapters.amplitude",
    "thrivestack": "adapters.thrivestack",
    "tranthor": "adapters.tranthor",
}

SOURCE_ATTRS = ("ROUTES", "decode", "reply_ok", "reply_error")
DESTINATION_ATTRS = ("Settings", "INTEGRATION_NAMES", "batch_limits", "build_requests", "classify")


class UnknownAdapter(LookupError):
    pass


def names() -> dict[str, str]:
    found = dict(BUILTIN)
    for point in entry_points(group="trackgate.adapters"):
        found.setdefault(point.name, point.value)
    return found


@cache
def load(name: str) -> ModuleType:
    target = names().get(name)
    if target is None:
        raise UnknownAdapter(name)
    return importlib.import_module(target)


def _has(module: ModuleType, attrs: tuple[str, ...]) -> bool:
    return all(hasattr(module, attr) for attr in attrs)


def source_formats() -> list[str]:
    return sorted(n for n in names() if _has(load(n), SOURCE_ATTRS))


def destination_types() -> list[str]:
    return sorted(n for n in names() if _has(load(n), DESTINATION_ATTRS))


def source(name: str) -> ModuleType:
    module = load(name)
    if not _has(module, SOURCE_ATTRS):
        raise UnknownAdapter(name)
    return module


def destination(name: str) -> ModuleType:
    module = load(name)
    if not _has(module, DESTINATION_ATTRS):
        raise UnknownAdapter(name)
    return module
