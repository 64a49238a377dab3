"""Typed Segment-like msgspec Structs the floor app decodes into (tagged union on `type`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Union

import msgspec


class Library(msgspec.Struct):
    name: str
    version: str | None = None


class PageContext(msgspec.Struct):
    path: str | None = None
    referrer: str | None = None
    search: str | None = None
    title: str | None = None
    url: str | None = None


class Campaign(msgspec.Struct):
    name: str | None = None
    source: str | None = None
    medium: str | None = None
    term: str | None = None
    content: str | None = None


class Context(msgspec.Struct):
    library: Library | None = None
    ip: str | None = None
    userAgent: str | None = None
    page: PageContext | None = None
    campaign: Campaign | None = None
    locale: str | None = None
    timezone: str | None = None


class Base(msgspec.Struct, kw_only=True, tag_field="type"):
    messageId: str | None = None
    userId: str | None = None
    anonymousId: str | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    context: Context | None = None
    integrations: dict[str, Any] | None = None


class Identify(Base, tag="identify"):
    traits: dict[str, Any] = {}


class Track(Base, tag="track"):
    event: str
    properties: dict[str, Any] = {}


class Page(Base, tag="page"):
    name: str | None = None
    properties: dict[str, Any] = {}


class Screen(Base, tag="screen"):
    name: str | None = None
    properties: dict[str, Any] = {}


class Group(Base, tag="group"):
    groupId: str
    traits: dict[str, Any] = {}


class Alias(Base, tag="alias"):
    previousId: str


Event = Union[Identify, Track, Page, Screen, Group, Alias]


class Batch(msgspec.Struct):
    batch: list[Event]
    sentAt: datetime | None = None
    context: Context | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = None


DECODERS = {
    "/v1/batch": msgspec.json.Decoder(Batch).decode,
    "/v1/identify": msgspec.json.Decoder(Identify).decode,
    "/v1/track": msgspec.json.Decoder(Track).decode,
    "/v1/page": msgspec.json.Decoder(Page).decode,
}
