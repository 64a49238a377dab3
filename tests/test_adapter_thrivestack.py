"""ThriveStack adapter properties fixtures cannot state: round trips, derived ids, atomic
rejects, request order and packing, bisection of a 400, and each documented lossy conversion."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from adapters import thrivestack
from gateway import registry
from gateway.adapter import (
    Alias,
    Group,
    Identify,
    InboundRequest,
    IngestError,
    Page,
    Response,
    Screen,
    SourceLimits,
    Track,
    decode_event,
    encode_event,
    obj,
    raw,
)
from gateway.config import RetryConfig
from gateway.retry import RetryPolicy
from tests.adapter_checks import mutations

GOLDEN = Path(__file__).parent / "golden" / "thrivestack" / "source"
SETTINGS = thrivestack.Settings(api_key="TS_API_KEY")
RECEIVED_AT = "2026-11-23T11:26:28.000Z"
KEY = "ts_live_key_123"

def _request(path: str, items, key: str | None = KEY, received_at: str = RECEIVED_AT) -> InboundRequest:
    body = items if isinstance(items, bytes) else json.dumps(items).encode()
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    return InboundRequest("POST", path, headers, body, received_at)


def _decode(path: str, items, **kwargs) -> list:
    decoded = thrivestack.decode(_request(path, items, **kwargs), SourceLimits())
    assert not decoded.rejects, decoded.rejects
    return decoded.events


def _stored(events: list) -> list:
    """Events as the engine stores them: re-read, with its timestamp filled in."""
    stored = [decode_event(encode_event(event)) for event in events]
    for event in stored:
        event.timestamp = event.original_timestamp or RECEIVED_AT
        event.received_at, event.source = RECEIVED_AT, "ts"
    return stored


def _sent(events: list, settings=SETTINGS) -> list[tuple[str, dict]]:
    """(endpoint, item) of every item sent, request by request."""
    return [
        (request.url.rsplit("/", 1)[1], item)
        for request in thrivestack.build_requests(events, settings)
        for item in json.loads(request.body)
    ]


def _docs_examples() -> list[tuple[str, list]]:
    cases = [json.loads(path.read_text()) for path in sorted(GOLDEN.glob("docs_*.json"))]
    return [(case["request"]["path"], case["request"]["body"]) for case in cases]


# ---- purity and registration ---------------------------------------------------------


def test_registered_both_ways() -> None:
    assert "thrivestack" in registry.source_formats()
    assert "thrivestack" in registry.destination_types()
    assert thrivestack.ROUTES == ("/api/identify", "/api/track", "/api/group")


def test_no_dedupe_and_a_small_retry_budget() -> None:
    assert thrivestack.DEDUPES is False
    policy = RetryConfig().policy(thrivestack.DEFAULT_RETRY)
    default = RetryPolicy()
    assert policy.max_attempts < default.max_attempts and policy.max_age_s <= 600 < default.max_age_s
    overridden = RetryConfig(max_attempts=2).policy(thrivestack.DEFAULT_RETRY)
    assert overridden.max_attempts == 2 and overridden.max_age_s == policy.max_age_s


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SETTINGS.api_key = "other"  # type: ignore[misc]


# ---- source half ---------------------------------------------------------------------


@pytest.mark.parametrize("path, items", _docs_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_docs_examples_round_trip_to_thrivestack_unchanged(path: str, items: list) -> None:
    """ThriveStack -> canonical -> ThriveStack gives back every documented field as sent
    (times in trackgate's form: "…:00Z" -> "…:00.000Z")."""
    sent = _sent(_stored(_decode(path, items)))
    assert [endpoint for endpoint, _ in sent] == [path.rsplit("/", 1)[1]] * len(items)
    for (_, item), original in zip(sent, items):
        want = {**original, "timestamp": original["timestamp"].replace("Z", ".000Z")}
        assert item == want


def test_a_bad_item_refuses_the_whole_request_naming_item_and_field() -> None:
    items = [{"event_name": "ok", "user_id": "u"}, {"event_name": "bad"}, {"user_id": "u"}]
    decoded = thrivestack.decode(_request("/api/track", items), SourceLimits())
    assert decoded.atomic is True
    assert [(r.index, r.code, r.field) for r in decoded.rejects] == [
        (1, "missing_user_id", "user_id"), (2, "missing_event_name", "event_name")]
    assert all(json.loads(r.payload) == items[r.index] for r in decoded.rejects)
    error = IngestError(400, decoded.rejects[0].code, decoded.rejects[0].message, rejects=decoded.rejects)
    reply = thrivestack.reply_error(_request("/api/track", items), error)
    body = json.loads(reply.body)
    assert reply.status == 400 and body["success"] is False and body["error"] == "missing_user_id"
    assert [(e["index"], e["field"], e["code"]) for e in body["errors"]] == [
        (1, "user_id", "missing_user_id"), (2, "event_name", "missing_event_name")]


def test_a_resend_of_the_same_array_gets_the_same_ids() -> None:
    items = [{"event_name": "feature_used", "user_id": "u", "properties": {"a": 1, "b": [1, 2]}},
             {"event_name": "feature_used", "user_id": "u", "timestamp": "2024-01-15T10:30:00Z"}]
    first = _decode("/api/track", items)
    again = _decode("/api/track", items)
    assert [e.message_id for e in first] == [e.message_id for e in again]
    assert len({e.message_id for e in first}) == 2


def test_derived_ids_ignore_formatting_but_not_content_key_or_endpoint() -> None:
    item = {"event_name": "feature_used", "user_id": "u", "properties": {"a": 1, "b": 2},
            "timestamp": "2024-01-15T10:30:00Z"}
    (base,) = _decode("/api/track", [item])
    reordered = json.dumps([dict(reversed(list(item.items())))], indent=2).encode()
    (same,) = _decode("/api/track", reordered, received_at="2026-11-24T00:00:00.000Z")
    assert same.message_id == base.message_id  # key order, whitespace and receive time don't count
    (other_key,) = _decode("/api/track", [item], key="another-key")
    (other_value,) = _decode("/api/track", [{**item, "properties": {"a": 1, "b": 3}}])
    (as_identify,) = _decode("/api/identify", [item])
    ids = {base.message_id, other_key.message_id, other_value.message_id, as_identify.message_id}
    assert len(ids) == 4 and all(i.startswith("thrivestack-") and len(i) <= 100 for i in ids)


def test_items_without_timestamp_dedupe_on_resend_and_stay_distinct_within_a_request() -> None:
    """No timestamp: a resend of the same array (any time later) gets the same ids, so it is
    deduplicated; two identical items of one array are still two events (lossy case: the
    same untimed item at the same position of a later request is taken as a resend)."""
    item = {"event_name": "feature_used", "user_id": "u"}
    first = _decode("/api/track", [item, item])
    resend = _decode("/api/track", [item, item], received_at="2026-11-23T11:27:29.000Z")
    assert [e.message_id for e in first] == [e.message_id for e in resend]
    assert first[0].message_id != first[1].message_id


def test_reply_ok_is_deterministic_per_request() -> None:
    one = thrivestack.reply_ok(_request("/api/track", [{"event_name": "a", "user_id": "u"}]), 1, 0)
    two = thrivestack.reply_ok(_request("/api/track", [{"event_name": "b", "user_id": "u"}]), 1, 0)
    body = json.loads(one.body)
    assert one.status == 200 and body["success"] is True and body["eventId"].startswith("evt_")
    assert json.loads(two.body)["eventId"] != body["eventId"]
    assert thrivestack.reply_ok(_request("/api/track", [{"event_name": "a", "user_id": "u"}]), 0, 1) == one


@pytest.mark.parametrize("seed", range(40))
def test_bad_input_is_a_reject_or_an_ingest_error_never_a_crash(seed: int) -> None:
    rng = random.Random(seed)
    path, items = rng.choice(_docs_examples())
    for mutated in mutations(json.dumps(items).encode(), rng):
        try:
            decoded = thrivestack.decode(_request(path, mutated), SourceLimits())
        except IngestError as error:
            assert 400 <= error.status < 500 and error.code and error.message
            continue
        for event in decoded.events:  # what it accepted is canonical and re-readable
            assert decode_event(encode_event(event)) == event and event.user_id and event.message_id
        for reject in decoded.rejects:
            assert reject.code and reject.message and reject.payload


@pytest.mark.parametrize("kind", ["identify", "track", "page", "group", "screen", "alias"])
def test_sample_request_is_accepted_by_the_source_half(kind: str) -> None:
    path, headers, body = thrivestack.sample_request("K", {"type": kind, "userId": "u-9", "messageId": "m-9"})
    request = InboundRequest("POST", path, {k.lower(): v for k, v in headers.items()}, body, RECEIVED_AT)
    decoded = thrivestack.decode(request, SourceLimits())
    assert decoded.key == "K" and not decoded.rejects
    (event,) = decoded.events
    assert (event.user_id, event.message_id) == ("u-9", "m-9")
    assert type(event) is {"identify": Identify, "group": Group, "page": Page}.get(kind, Track)


# ---- destination half ----------------------------------------------------------------

T = "2026-11-23T11:26:27.500Z"


def test_identify_and_group_go_before_track_whatever_the_batch_order() -> None:
    events = [Track(message_id="t", user_id="u", event="E", timestamp=T),
              Group(message_id="g", user_id="u", group_id="acme", timestamp=T),
              Page(message_id="p", user_id="u", timestamp=T),
              Identify(message_id="i", user_id="u", timestamp=T)]
    requests = thrivestack.build_requests(events, SETTINGS)
    assert [(r.url.rsplit("/", 1)[1], r.events) for r in requests] == [
        ("identify", (3,)), ("group", (1,)), ("track", (0, 2))]


def test_alias_and_events_without_user_id_are_skipped_not_sent() -> None:
    events = [Alias(message_id="a", user_id="u", previous_id="anon"),
              Track(message_id="t", anonymous_id="anon", event="E", timestamp=T),
              Track(message_id="ok", user_id="u", event="E", timestamp=T)]
    assert [thrivestack.skip_reason(e, SETTINGS) for e in events] == ["alias_unsupported", "missing_user_id", None]
    (request,) = thrivestack.build_requests(events, SETTINGS)
    assert request.events == (2,)


@pytest.mark.parametrize("seed", range(20))
def test_every_event_in_exactly_one_request_within_limits(seed: int) -> None:
    rng = random.Random(seed)
    settings = thrivestack.Settings(api_key="K", max_request_events=rng.choice([1, 7, 100]),
                                    max_request_bytes=rng.choice([2_000, 50_000, 500_000]))
    kinds = [lambda i: Track(message_id=f"m{i}", user_id="u", event="E", timestamp=T, properties=raw({"pad": "x" * rng.choice((0, 300, 5_000))})),
             lambda i: Identify(message_id=f"m{i}", user_id="u", timestamp=T),
             lambda i: Group(message_id=f"m{i}", user_id="u", group_id="g", timestamp=T),
             lambda i: Page(message_id=f"m{i}", user_id="u", timestamp=T)]
    events = [rng.choice(kinds)(i) for i in range(rng.randrange(0, 400))]
    requests = thrivestack.build_requests(events, settings)
    assert sorted(i for r in requests for i in r.events) == list(range(len(events)))
    for request in requests:
        assert len(request.events) <= settings.max_request_events
        assert len(request.body) <= settings.max_request_bytes or len(request.events) == 1
        assert len(json.loads(request.body)) == len(request.events)


def test_a_400_bisects_down_to_the_bad_item_and_ends() -> None:
    """ThriveStack's 400 names no item: split verdicts halve the array (as the engine does)
    until the poison item is alone; the others are delivered, at most 2n-1 requests."""
    events = [Track(message_id=f"m{i}", user_id="u", event="poison" if i == 37 else "ok", timestamp=T) for i in range(100)]
    outcome, requests = {}, 0

    def send(indexes: list[int]) -> None:
        nonlocal requests
        for request in thrivestack.build_requests([events[i] for i in indexes], SETTINGS):
            requests += 1
            bad = any(item["event_name"] == "poison" for item in json.loads(request.body))
            verdicts = thrivestack.classify(request, Response(400 if bad else 200, {}, b"{}"))
            targets = [indexes[i] for i in request.events]
            split = [i for i, v in zip(targets, verdicts) if v.status == "split"]
            outcome.update({i: v.status for i, v in zip(targets, verdicts) if v.status != "split"})
            if split:
                send(split[: len(split) // 2])
                send(split[len(split) // 2:])

    send(list(range(100)))
    assert outcome == {i: "dead" if i == 37 else "delivered" for i in range(100)}
    assert requests <= 2 * 100 - 1 and requests <= 1 + 2 * 7  # one path down: log2(100) levels


def test_pause_verdict_says_what_to_fix() -> None:
    (request,) = thrivestack.build_requests([Track(message_id="m", user_id="u", event="E", timestamp=T)], SETTINGS)
    (verdict,) = thrivestack.classify(request, Response(401, {}, b'{"message":"Unauthorized"}'))
    assert verdict.status == "pause" and verdict.code == "http_401"
    assert "api_key" in verdict.detail and "Unauthorized" in verdict.detail


# ---- lossy conversions, in (one test each, showing exactly what is lost) ---------------


def test_in_fields_outside_the_docs_are_dropped() -> None:
    (identify,) = _decode("/api/identify", [{"user_id": "u", "traits": {"plan": "pro"}, "properties": {"x": 1},
                                             "anonymous_id": "a", "integrations": {"All": False}}])
    (track,) = _decode("/api/track", [{"event_name": "E", "user_id": "u", "traits": {"plan": "pro"}, "extra": 1}])
    assert json.loads(encode_event(identify)) == {"type": "identify", "messageId": identify.message_id, "userId": "u", "traits": {"plan": "pro"}}
    assert json.loads(encode_event(track)) == {"type": "track", "messageId": track.message_id, "userId": "u", "event": "E"}


def test_in_a_reserved_name_wins_over_its_canonical_twin() -> None:
    (event,) = _decode("/api/identify", [{"user_id": "u", "traits": {"email": "lost@x", "user_email": "kept@x", "plan": "p"}}])
    assert obj(event.traits) == {"email": "kept@x", "plan": "p"}


def test_in_only_lower_case_reserved_names_are_renamed() -> None:
    (event,) = _decode("/api/group", [{"group_id": "g", "user_id": "u", "traits": {"Account_Name": "Acme", "account_name": "ACME"}}])
    assert obj(event.traits) == {"Account_Name": "Acme", "name": "ACME"}


def test_in_times_lose_sub_milliseconds_and_offset() -> None:
    (event,) = _decode("/api/track", [{"event_name": "E", "user_id": "u", "timestamp": "2024-01-15T12:30:00.123456+02:00"}])
    assert event.original_timestamp == "2024-01-15T10:30:00.123Z"


def test_in_identical_items_with_the_same_timestamp_are_one_event() -> None:
    item = {"event_name": "feature_used", "user_id": "u", "timestamp": "2024-01-15T10:30:00Z"}
    first, second = _decode("/api/track", [item, item])
    assert first.message_id == second.message_id  # the store keeps the first only


def test_in_page_visit_loses_its_event_name() -> None:
    (page,) = _decode("/api/track", [{"event_name": "page_visit", "user_id": "u", "properties": {"page_url": "https://a/"}}])
    assert isinstance(page, Page) and not hasattr(page, "event")
    renamed = thrivestack.Settings(api_key="K", page_event_name="page_viewed")
    assert _sent(_stored([page]), renamed)[0][1]["event_name"] == "page_viewed"


# ---- lossy conversions, out ------------------------------------------------------------


def _segment_track(**fields) -> Track:
    base = dict(message_id="m-1", user_id="u", anonymous_id="anon-1", event="Clicked", timestamp=T,
                original_timestamp="2026-11-23T11:26:27.332Z", sent_at="2026-11-23T11:26:27.378Z",
                received_at="2026-11-23T11:26:27.450Z", source="web", integrations=raw({"Amplitude": False}),
                properties=raw({"a": 1}),
                context=raw({"ip": "203.0.113.9", "userAgent": "Mozilla", "library": {"name": "analytics.js"},
                             "locale": "en-GB", "os": {"name": "iOS"}, "device": {"id": "dev-1", "model": "X"},
                             "sessionId": "s-1", "source": "product", "groupId": "g-1"}))
    return Track(**{**base, **fields})


def test_out_ids_times_integrations_and_most_of_the_context_are_not_sent() -> None:
    ((_, item),) = _sent([_segment_track()])
    assert item == {"event_name": "Clicked", "user_id": "u", "properties": {"a": 1}, "timestamp": T,
                    "context": {"group_id": "g-1", "device_id": "dev-1", "session_id": "s-1", "source": "product"}}


def test_out_anonymous_id_stands_in_for_a_missing_device_id_only() -> None:
    ((_, item),) = _sent([_segment_track(context=raw({}))])
    assert item["context"] == {"device_id": "anon-1"}


def test_out_a_screen_comes_back_as_a_track() -> None:
    screen = Screen(message_id="m", user_id="u", name="Home", category="Main", properties=raw({"step": 1}), timestamp=T)
    ((endpoint, item),) = _sent([screen])
    assert endpoint == "track" and item["properties"] == {"step": 1, "screen_name": "Home", "screen_category": "Main"}
    (back,) = _decode("/api/track", [item])
    assert isinstance(back, Track) and back.event == "screen_viewed"
    assert obj(back.properties) == {"step": 1, "screen_name": "Home", "screen_category": "Main"}


def test_out_a_page_round_trips_through_thrivestack() -> None:
    page = Page(message_id="m", user_id="u", name="Pricing", category="Docs", timestamp=T,
                properties=raw({"url": "https://a/p", "path": "/p", "title": "P", "referrer": "https://r/", "search": "?q"}))
    ((_, item),) = _sent([page])
    assert item["properties"] == {"page_url": "https://a/p", "page_path": "/p", "page_title": "P",
                                  "page_referrer": "https://r/", "search": "?q", "page_name": "Pricing", "page_category": "Docs"}
    (back,) = _decode("/api/track", [item])
    assert (back.name, back.category, obj(back.properties)) == (page.name, page.category, obj(page.properties))


def test_out_a_group_sends_its_group_id_as_context_group_id() -> None:
    group = Group(message_id="m", user_id="u", group_id="acme", timestamp=T, context=raw({"groupId": "lost"}))
    ((_, item),) = _sent([group])
    assert item["context"] == {"group_id": "acme"}


def test_out_snake_case_traits_lose_to_their_canonical_twin() -> None:
    identify = Identify(message_id="m", user_id="u", timestamp=T, traits=raw({"first_name": "lost", "firstName": "Ada"}))
    ((_, item),) = _sent([identify])
    assert item["traits"] == {"first_name": "Ada"}


def test_round_trip_keeps_custom_context_keys_only_on_the_canonical_side() -> None:
    """A ThriveStack context key outside the four is kept in canonical form, not sent on."""
    (event,) = _decode("/api/track", [{"event_name": "E", "user_id": "u", "context": {"user_agent": "curl/8", "session_id": "s"}}])
    assert obj(event.context) == {"user_agent": "curl/8", "sessionId": "s"}
    ((_, item),) = _sent(_stored([event]))
    assert item["context"] == {"session_id": "s"}


def test_settings_reject_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="write_key"):
        msgspec.convert({"api_key": "K", "write_key": "x"}, thrivestack.Settings)
