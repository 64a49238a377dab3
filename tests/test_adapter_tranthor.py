"""Tranthor adapter properties fixtures cannot state: lossless Tranthor->Tranthor round trips,
exactly what each lossy conversion loses, batching bounds, bad input, purity."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from adapters import tranthor
from gateway.adapter import (
    Alias,
    Group,
    Identify,
    InboundRequest,
    IngestError,
    Page,
    Reject,
    Response,
    SourceLimits,
    Track,
    decode_event,
    encode_event,
    raw,
)
from gateway.ingest import enrich
from tests.adapter_checks import check_packing, mutations, padded_tracks

CAPTURES = Path(__file__).parent / "captures"
RECEIVED_AT = "2026-11-23T11:26:28.000Z"
RECEIVED_MS = 1795433188000
BATCH = "/api/public/apps/batch"
SETTINGS = tranthor.Settings(write_key="dG9rZW4=", base_url="http://127.0.0.1:9")
AUTH = {"authorization": "Basic dG9rZW4=", "content-type": "application/json"}

def _request(path: str, body: bytes | dict, headers: dict | None = None) -> InboundRequest:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return InboundRequest("POST", path, AUTH if headers is None else headers, body, RECEIVED_AT)


def _ingest(body: dict, path: str = BATCH) -> list:
    """decode as the engine would, then enrich: the stored canonical events."""
    decoded = tranthor.decode(_request(path, body), SourceLimits())
    assert decoded.rejects == []
    enrich(decoded.events, "web", RECEIVED_AT, RECEIVED_MS)
    return decoded.events


def _sent(events: list) -> list[dict]:
    requests = tranthor.build_requests(events, SETTINGS)
    return [item for request in requests for item in json.loads(request.body)["batch"]]


def _canonical(event) -> dict:
    return json.loads(encode_event(event))


# ---- Tranthor -> Tranthor ------------------------------------------------------------

EVERY_FIELD = [
    {"messageId": "m-1", "type": "identify", "userId": "u-1", "anonymousId": "a-1",
     "traits": {"email": "ada@example.com", "firstName": "Ada", "nested": {"x": [1, 2]}},
     "timestamp": "2026-11-23T11:00:00.000Z", "context": {"ip": "192.0.2.1", "locale": "de-DE"},
     "integrations": {"Amplitude": False}},
    {"messageId": "m-2", "type": "track", "userId": "u-1", "event": "Uploaded", "properties": {"size": 3},
     "files": [{"type": "Base64Encoded", "name": "a.txt", "mimeType": "text/plain", "data": "aGk="}],
     "timestamp": "2026-11-23T11:00:01.000Z", "context": {"ip": "192.0.2.1"}},
    {"messageId": "m-3", "type": "page", "anonymousId": "a-1", "name": "Home", "category": "Docs",
     "properties": {"url": "https://example.com/"}, "timestamp": "2026-11-23T11:00:02.000Z"},
    {"messageId": "m-4", "type": "screen", "userId": "u-1", "name": "Welcome", "properties": {"step": 1},
     "timestamp": "2026-11-23T11:00:03.000Z"},
    {"messageId": "m-5", "type": "group", "userId": "u-1", "groupId": "acme", "traits": {"name": "Acme"},
     "assigned": False, "timestamp": "2026-11-23T11:00:04.000Z", "integrations": {"All": True}},
]


def test_tranthor_to_tranthor_keeps_every_field() -> None:
    assert _sent(_ingest({"batch": EVERY_FIELD})) == EVERY_FIELD


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group"])
def test_single_paths_round_trip_too(kind: str) -> None:
    (item,) = [dict(i) for i in EVERY_FIELD if i["type"] == kind]
    body = {k: v for k, v in item.items() if k != "type"}
    assert _sent(_ingest(body, tranthor.PREFIX + kind)) == [item]


def test_captured_sdk_batch_goes_on_unchanged_but_for_the_time() -> None:
    """What @dittofeed/sdk-node really sent reaches Tranthor as sent, plus `timestamp`: the SDK
    sends none, so the event time is trackgate's receipt time (Dittofeed would use its own)."""
    (recorded, _) = [
        r for r in json.loads((CAPTURES / "dittofeed-node.json").read_text())["scenarios"]["calls"]["requests"]
        if "body" in r
    ]
    sent = _sent(_ingest(recorded["body"]))
    assert sent == [{**item, "timestamp": RECEIVED_AT} for item in recorded["body"]["batch"]]


# ---- lossy conversions, in: exactly what is lost ----------------------------------------


def test_lossy_in_fields_outside_the_schema_are_dropped() -> None:
    item = {"messageId": "m", "type": "identify", "userId": "u", "traits": {"a": 1}, "timestamp": "2026-11-23T11:00:00.000Z"}
    extras = {"sentAt": "2026-11-23T11:00:01.000Z", "originalTimestamp": "2026-11-23T10:00:00.000Z",
              "receivedAt": "2026-11-23T11:00:02.000Z", "properties": {"p": 1}, "_metadata": {"m": 1},
              "event": "E", "groupId": "g", "source": "spoofed"}
    sent = _sent(_ingest({"batch": [{**item, **extras}], "integrations": {"All": False}, "sentAt": "x"}))
    assert sent == [item]  # every extra, and the batch-level integrations and sentAt, are gone


def test_lossy_in_batch_context_merged_shallow_and_reencoded() -> None:
    body = b'{"batch":[{"type":"track","messageId":"m","userId":"u","event":"E","context":{ "b" : {"y":2}, "a":1 }}],' \
           b'"context":{"b":{"x":1},"c":3}}'
    (event,) = tranthor.decode(_request(BATCH, body), SourceLimits()).events
    # batch keys first, item keys win whole (b.x is lost), whitespace gone
    assert bytes(event.context) == b'{"b":{"y":2},"c":3,"a":1}'
    (alone,) = tranthor.decode(_request(BATCH, body.replace(b',"context":{"b":{"x":1},"c":3}', b"")), SourceLimits()).events
    assert bytes(alone.context) == b'{ "b" : {"y":2}, "a":1 }'  # no batch context: byte for byte


def test_lossy_in_extension_fields_move_to_integrations_and_tranthor_false_drops_them() -> None:
    files = [{"type": "Base64Encoded", "name": "a", "mimeType": "text/plain", "data": "aGk="}]
    body = {"batch": [
        {"type": "track", "messageId": "t", "userId": "u", "event": "E", "files": files},
        {"type": "group", "messageId": "g", "userId": "u", "groupId": "acme", "assigned": True,
         "integrations": {"Tranthor": False}},
    ]}
    track, group = tranthor.decode(_request(BATCH, body), SourceLimits()).events
    assert _canonical(track)["integrations"] == {"Tranthor": {"files": files}}
    assert "files" not in _canonical(track)
    assert _canonical(group)["integrations"] == {"Tranthor": False}  # `assigned: true` is lost


def test_lossy_in_time_offset_and_sub_milliseconds_lost_missing_time_is_receipt_time() -> None:
    body = {"batch": [
        {"type": "track", "messageId": "m-1", "userId": "u", "event": "E", "timestamp": "2026-11-23T13:00:00.123987+02:00"},
        {"type": "track", "messageId": "m-2", "userId": "u", "event": "E"},
    ]}
    first, second = _sent(_ingest(body))
    assert first["timestamp"] == "2026-11-23T11:00:00.123Z"  # same instant; "+02:00" and "987" gone
    assert second["timestamp"] == RECEIVED_AT


def test_lossy_in_numbers_and_booleans_become_strings() -> None:
    body = {"batch": [{"type": "track", "messageId": 7, "userId": 1043, "event": False}]}
    assert _sent(_ingest(body)) == [{"messageId": "7", "type": "track", "userId": "1043", "event": "false",
                                     "timestamp": RECEIVED_AT}]


def test_lossy_in_empty_strings_read_as_absent_and_empty_message_id_replaced() -> None:
    body = {"batch": [{"type": "page", "messageId": "", "userId": "", "anonymousId": "a", "name": "", "timestamp": ""}]}
    (event,) = _ingest(body)
    assert event.user_id is None and event.name is None and event.timestamp == RECEIVED_AT
    assert event.message_id and len(event.message_id) == 36  # generated by the engine


def test_lossy_in_single_path_decides_the_type_and_last_duplicate_key_wins() -> None:
    body = b'{"type":"track","event":"E","messageId":"m","userId":"first","userId":"last"}'
    (event,) = tranthor.decode(_request(tranthor.PREFIX + "identify", body), SourceLimits()).events
    assert isinstance(event, Identify) and event.user_id == "last"
    assert "event" not in _canonical(event)


# ---- lossy conversions, out ---------------------------------------------------------


def test_lossy_out_alias_is_skipped_with_a_reason() -> None:
    alias = Alias(message_id="m", user_id="u", previous_id="a")
    assert tranthor.skip_reason(alias, SETTINGS) == "alias_unsupported"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (Track(message_id="m", event="E"), "missing_identifier"),
        (Track(message_id="m", user_id="u"), "missing_event"),
        (Group(message_id="m", user_id="u"), "missing_group_id"),
        (Track(message_id="m", anonymous_id="a", event="E"), None),
        (Page(message_id="m", user_id="u"), None),
    ],
)
def test_events_tranthor_would_refuse_are_skipped(event, reason) -> None:
    """One of them in a batch would make Dittofeed refuse the whole batch."""
    assert tranthor.skip_reason(event, SETTINGS) == reason


def test_lossy_out_times_other_than_the_event_time_and_source_are_not_sent() -> None:
    event = Track(message_id="m", user_id="u", event="E", timestamp="2026-11-23T11:00:00.500Z",
                  original_timestamp="2026-11-23T10:59:00.000Z", sent_at="2026-11-23T10:59:01.000Z",
                  received_at="2026-11-23T11:00:01.000Z", source="web")
    assert _sent([event]) == [{"messageId": "m", "type": "track", "userId": "u", "event": "E",
                               "timestamp": "2026-11-23T11:00:00.500Z"}]


def test_lossy_out_integrations_emptied_by_the_extension_is_left_out() -> None:
    event = Group(message_id="g", user_id="u", group_id="acme", timestamp="2026-11-23T11:00:00.000Z",
                  integrations=raw({"Tranthor": {"assigned": False}}))
    (sent,) = _sent([event])
    assert sent["assigned"] is False and "integrations" not in sent


def test_an_alias_built_anyway_is_sent_with_previous_id() -> None:
    """Only routing skips alias; a replayed one still has a faithful body (Dittofeed 400s it)."""
    (sent,) = _sent([Alias(message_id="m", user_id="u", previous_id="a", timestamp="2026-11-23T11:00:00.000Z")])
    assert sent == {"messageId": "m", "type": "alias", "userId": "u", "previousId": "a", "timestamp": "2026-11-23T11:00:00.000Z"}


# ---- source half --------------------------------------------------------------------


def test_one_invalid_item_refuses_the_request() -> None:
    body = {"batch": [{"type": "track", "messageId": "m", "userId": "u", "event": "E"}, {"type": "track", "userId": "u"}]}
    decoded = tranthor.decode(_request(BATCH, body), SourceLimits())
    assert decoded.atomic is True
    (reject,) = decoded.rejects
    assert (reject.index, reject.code, reject.field) == (1, "missing_message_id", "messageId")
    assert reject.message == "body/batch/1 must have required property 'messageId'"


def test_the_engines_refusal_is_fastify_shaped_and_names_the_item() -> None:
    reject = Reject(3, "missing_event", "body/batch/3 must have required property 'event'", b"{}", "event")
    error = IngestError(400, reject.code, reject.message, rejects=[reject])
    reply = tranthor.reply_error(_request(BATCH, b""), error)
    assert reply.status == 400
    assert json.loads(reply.body) == {"statusCode": 400, "code": "FST_ERR_VALIDATION", "error": "Bad Request",
                                      "message": "body/batch/3 must have required property 'event'"}


def test_alias_is_refused_whatever_the_key() -> None:
    with pytest.raises(IngestError) as info:
        tranthor.decode(_request(tranthor.PREFIX + "alias", b"{}", headers={}), SourceLimits())
    assert info.value.status == 400
    assert tranthor.reply_error(_request("/", b""), info.value).body == b'{"message":"Not yet implemented."}'


def test_routes() -> None:
    assert sorted(r.removeprefix(tranthor.PREFIX) for r in tranthor.ROUTES) == [
        "alias", "batch", "group", "identify", "page", "screen", "track"]


@pytest.mark.parametrize("seed", range(30))
def test_bad_input_is_a_reject_or_an_ingest_error_never_a_crash(seed: int) -> None:
    rng = random.Random(seed)
    batch = json.dumps({"batch": EVERY_FIELD, "context": {"ip": "192.0.2.1"}}).encode()
    item = rng.choice(EVERY_FIELD)
    single = json.dumps({k: v for k, v in item.items() if k != "type"}).encode()
    for path, body in ((BATCH, batch), (tranthor.PREFIX + item["type"], single)):
        for mutated in mutations(body, rng, rounds=4):
            try:
                decoded = tranthor.decode(_request(path, mutated), SourceLimits())
            except IngestError as error:
                assert 400 <= error.status < 500 and error.code and error.message
                continue
            for event in decoded.events:  # what it accepted is canonical and re-readable
                assert decode_event(encode_event(event)) == event
                assert event.user_id or event.anonymous_id
            for reject in decoded.rejects:
                assert reject.code and reject.message.startswith("body") and reject.payload is not None


# ---- destination half ---------------------------------------------------------------


def _events(seed: int) -> list:
    return padded_tracks(seed, 400, (0, 10, 500, 60_000, 600_000, 2_000_000))


@pytest.mark.parametrize("seed", range(15))
def test_every_event_in_exactly_one_request_within_limits(seed: int) -> None:
    events = _events(seed)
    limits = tranthor.batch_limits(SETTINGS)
    requests = tranthor.build_requests(events, SETTINGS)
    check_packing(requests, len(events), limits.max_events, limits.max_bytes)
    for request in requests:
        assert len(request.body) <= limits.max_bytes  # no event here is too large on its own
        assert [item["messageId"] for item in json.loads(request.body)["batch"]] == [f"m{i}" for i in request.events]


@pytest.mark.parametrize(
    ("write_key", "header"),
    [("dG9rZW4=", "Basic dG9rZW4="), ("Basic dG9rZW4=", "Basic dG9rZW4="), ("bearer tok", "bearer tok"),
     (" dG9rZW4= ", "Basic dG9rZW4=")],
)
def test_authorization_header(write_key: str, header: str) -> None:
    (request,) = tranthor.build_requests([Track(message_id="m", user_id="u", event="E")],
                                         tranthor.Settings(write_key=write_key))
    assert dict(request.headers)["authorization"] == header


@pytest.mark.parametrize("body", [b"", b"[]", b'{"message": 3}', b'"body/batch/0"', b"\xff", b'{"message":"body/batch/x"}'])
def test_a_400_that_names_no_item_kills_the_request(body: bytes) -> None:
    (request,) = tranthor.build_requests([Track(message_id=f"m{i}", user_id="u", event="E") for i in range(3)], SETTINGS)
    verdicts = tranthor.classify(request, Response(400, {}, body))
    assert [v.status for v in verdicts] == ["dead"] * 3


def test_settings_are_frozen_and_strict() -> None:
    with pytest.raises(AttributeError):
        SETTINGS.write_key = "other"  # type: ignore[misc]
    with pytest.raises(msgspec.ValidationError, match="batch"):
        msgspec.convert({"write_key": "k", "batch": 5}, tranthor.Settings)
