"""Routing: enabled flags, the event's integrations flags, filters; every skip counted."""

from collections import Counter

import pytest

from gateway.config import parse
from gateway.event import Identify, Track, raw
from gateway.ingest import build_dialects


@pytest.fixture
def routes():
    config = parse(
        {
            "sources": {"web": {"format": "segment", "keys": ["k"], "destinations": ["seg", "hooks", "archive", "off"]}},
            "destinations": {
                "seg": {"type": "segment", "settings": {"write_key": "w"}},
                "hooks": {
                    "type": "webhook",
                    "settings": {"url": "http://127.0.0.1:1/x"},
                    "filter": {"types": ["track"], "events_exclude": ["Noise"]},
                },
                "archive": {"type": "file", "settings": {"path": "x.jsonl"}},
                "off": {"type": "file", "enabled": False, "settings": {"path": "y.jsonl"}},
            },
        },
        {},
    )
    return build_dialects(config)["segment"].source_for("k").routes


def go(event, routes):
    counts = Counter()
    return routes.route(event, counts), counts


def test_everything_enabled_gets_the_event_and_disabled_is_counted(routes):
    chosen, counts = go(Track(event="Signed Up", user_id="u"), routes)
    assert chosen == ("seg", "hooks", "archive")
    assert counts == {("off", "skipped_disabled"): 1}


def test_all_false_keeps_only_what_is_named(routes):
    event = Track(event="x", user_id="u", integrations=raw({"All": False, "Segment": True, "archive": {}}))
    chosen, counts = go(event, routes)
    assert chosen == ("seg", "archive")
    assert counts[("hooks", "skipped_integrations")] == 1


def test_a_false_flag_by_vendor_or_destination_name(routes):
    event = Track(event="x", user_id="u", integrations=raw({"segment.io": False, "Archive": False}))
    chosen, counts = go(event, routes)
    assert chosen == ("hooks",)
    assert counts[("seg", "skipped_integrations")] == 1 and counts[("archive", "skipped_integrations")] == 1


def test_filters_by_type_and_name(routes):
    chosen, counts = go(Identify(user_id="u"), routes)
    assert "hooks" not in chosen and counts[("hooks", "skipped_filter")] == 1
    chosen, counts = go(Track(event="Noise", user_id="u"), routes)
    assert "hooks" not in chosen and counts[("hooks", "skipped_filter")] == 1


def test_the_precomputed_route_matches_the_general_one():
    config = parse(
        {
            "sources": {"web": {"format": "segment", "keys": ["k"], "destinations": ["a", "b", "off"]}},
            "destinations": {
                "a": {"type": "file", "settings": {"path": "a.jsonl"}},
                "b": {"type": "webhook", "settings": {"url": "http://127.0.0.1:1/"}},
                "off": {"type": "file", "enabled": False, "settings": {"path": "c.jsonl"}},
            },
        },
        {},
    )
    routes = build_dialects(config)["segment"].source_for("k").routes
    assert routes.plain == ("a", "b")
    for event in (Track(event="x", user_id="u"), Track(event="x", user_id="u", integrations=raw({}))):
        chosen, counts = go(event, routes)
        assert chosen == ("a", "b") and counts == {("off", "skipped_disabled"): 1}
    chosen, counts = go(Track(event="x", user_id="u", integrations=raw({"All": False, "b": True})), routes)
    assert chosen == ("b",) and counts[("a", "skipped_integrations")] == 1

