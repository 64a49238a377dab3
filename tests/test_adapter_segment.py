"""Segment adapter properties fixtures cannot state: batching bounds, round trips, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from adapters import segment
from adapters.segment import inbound
from gateway.adapter import (
    InboundRequest,
    IngestError,
    SourceLimits,
    decode_event,
    encode_event,
)
from tests.adapter_checks import check_packing, mutations, padded_tracks

CAPTURES = Path(__file__).parent / "captures"
SETTINGS = segment.Settings(write_key="SEG_WRITE_KEY")

def _request(path: str, body: bytes, headers: dict | None = None) -> InboundRequest:
    return InboundRequest("POST", path, headers or {}, body, "2026-11-23T11:26:28.000Z")


def _events(seed: int) -> list:
    return padded_tracks(seed, 1_300, (0, 10, 500, 9_000, 31_000, 60_000), source="web", sent_at="2026-11-23T11:26:27.000Z")


@pytest.mark.parametrize("seed", range(25))
def test_every_event_in_exactly_one_request_within_limits(seed: int) -> None:
    events = _events(seed)
    limits = segment.batch_limits(SETTINGS)
    requests = segment.build_requests(events, SETTINGS)
    check_packing(requests, len(events), limits.max_events, limits.max_bytes)
    for request in requests:
        sent = json.loads(request.body)["batch"]
        assert [item["messageId"] for item in sent] == [f"m{i}" for i in request.events]
        assert all("source" not in item and "sentAt" not in item for item in sent)


@pytest.mark.parametrize("seed", range(5))
def test_requests_are_as_full_as_the_limits_allow(seed: int) -> None:
    """Greedy packing: adding the next event to a request would break a limit."""
    events = _events(seed)
    limits = segment.batch_limits(SETTINGS)
    requests = segment.build_requests(events, SETTINGS)
    for request, following in zip(requests, requests[1:]):
        first_of_next = json.loads(following.body)["batch"][0]
        grown = len(request.body) + 1 + len(msgspec.json.encode(first_of_next))
        assert len(request.events) == limits.max_events or grown > limits.max_bytes


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_that_fits_one_request_is_the_same_bytes_either_way(seed: int) -> None:
    """A batch that fits one request is encoded in one call: its bytes are those of the
    event-by-event form; one event more than fits makes two requests."""
    limits = segment.batch_limits(SETTINGS)
    events = padded_tracks(seed, 400, (10, 900, 9_000, 20_000), source="web", sent_at="2026-11-23T11:26:27.000Z")
    each = [encode_event(segment.outbound._outgoing(event)) for event in events]
    fits = 0  # the longest prefix that fits one request
    while fits < len(each) and fits < limits.max_events:
        if len(b'{"batch":[' + b",".join(each[: fits + 1]) + b"]}") > limits.max_bytes:
            break
        fits += 1
    (request,) = segment.build_requests(events[:fits], SETTINGS)
    assert request.body == b'{"batch":[' + b",".join(each[:fits]) + b"]}"
    assert request.events == tuple(range(fits))
    if fits < len(events):
        assert len(segment.build_requests(events[: fits + 1], SETTINGS)) == 2


@pytest.mark.parametrize("capture", ["segment-python.json", "segment-node.json"])
def test_segment_to_segment_keeps_what_segment_reads(capture: str) -> None:
    """A captured SDK batch, decoded and sent on to Segment, keeps every Spec field."""
    (recorded,) = [
        r for r in json.loads((CAPTURES / capture).read_text())["scenarios"]["calls"]["requests"]
        if "body" in r
    ]
    body = json.dumps(recorded["body"]).encode()
    decoded = segment.decode(_request("/v1/batch", body), SourceLimits())
    assert not decoded.rejects
    stored = [decode_event(encode_event(event)) for event in decoded.events]  # as stored
    for event in stored:
        event.timestamp = event.original_timestamp  # what the engine's skew correction fills
    (request,) = segment.build_requests(stored, SETTINGS)
    spec = ("type", "messageId", "userId", "anonymousId", "event", "name", "category",
            "properties", "traits", "groupId", "previousId", "context", "integrations")
    for sent, original in zip(json.loads(request.body)["batch"], recorded["body"]["batch"]):
        want = {k: original[k] for k in spec if original.get(k) is not None}
        assert {k: sent[k] for k in spec if k in sent} == want


@pytest.mark.parametrize("seed", range(40))
def test_bad_input_is_a_reject_or_an_ingest_error_never_a_crash(seed: int) -> None:
    rng = random.Random(seed)
    capture = rng.choice(["segment-python.json", "segment-node.json"])
    (recorded,) = [
        r for r in json.loads((CAPTURES / capture).read_text())["scenarios"]["calls"]["requests"]
        if "body" in r
    ]
    batch = json.dumps(recorded["body"]).encode()
    single = json.dumps(recorded["body"]["batch"][rng.randrange(8)]).encode()
    for path, body in (("/v1/batch", batch), (rng.choice(segment.ROUTES[:12]), single)):
        for mutated in mutations(body, rng):
            try:
                decoded = segment.decode(_request(path, mutated), SourceLimits())
            except IngestError as error:
                assert 400 <= error.status < 500 and error.code and error.message
                continue
            for event in decoded.events:  # what it accepted is canonical and re-readable
                assert decode_event(encode_event(event)) == event
                assert event.user_id or event.anonymous_id
            for reject in decoded.rejects:
                assert reject.code and reject.message and reject.payload


def test_routes() -> None:
    assert len(segment.ROUTES) == 15 and len(set(segment.ROUTES)) == 15
    assert "/v1/import" in segment.ROUTES


def test_reply_error_code_equals_status() -> None:
    reply = segment.reply_error(_request("/v1/batch", b""), IngestError(413, "too_large", "big"))
    assert reply.status == 413 and json.loads(reply.body)["code"] == 413


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SETTINGS.write_key = "other"  # type: ignore[misc]


def _item(rng: random.Random, index: int, pad: int) -> dict:
    item = {"type": rng.choice(["track", "page", "identify"]), "event": "E", "userId": f"u{index}",
            "messageId": f"m{index}", "timestamp": "2026-11-23T11:26:27.123Z",
            "context": {"ip": "203.0.113.9"}, "_metadata": {"pad": "x" * pad}}
    if rng.random() < 0.02:
        item[rng.choice(["userId", "timestamp", "context"])] = rng.choice([None, "", 7, "not a time"])
    return item


@pytest.mark.parametrize("seed", range(40))
def test_one_pass_decode_agrees_with_the_item_by_item_path(seed: int, monkeypatch) -> None:
    rng = random.Random(seed)
    limits = SourceLimits(max_event_bytes=rng.choice([1_000, 4_000, 32 * 1024]))
    edge = limits.max_event_bytes
    pads = [0, 50, edge // 3, edge // 2, edge - 300, edge - 180, edge, edge * 2]
    items = [_item(rng, i, rng.choice(pads) if rng.random() < 0.05 else rng.randrange(80)) for i in range(rng.randrange(1, 30))]
    indent = rng.choice([None, 0, 2])
    envelope = {"batch": items, "sentAt": "2026-11-23T11:26:28.000Z"}
    if rng.random() < 0.3:
        envelope["context"] = {"library": {"name": "x"}}
    requests = [("/v1/batch", json.dumps(envelope, indent=indent).encode())]
    requests += [(f"/v1/{item['type']}", json.dumps(item, indent=indent).encode()) for item in items[:3]]
    headers = rng.choice([{}, {"authorization": "Basic U0VHX1dSSVRFX0tFWTo="}])
    for path, body in requests:
        fast = segment.decode(_request(path, body, headers), limits)
        with monkeypatch.context() as patched:
            patched.setattr(inbound, "_whole_batch", lambda request, limits: None)
            patched.setattr(inbound, "_whole_single", lambda request, kind, limits: None)
            slow = segment.decode(_request(path, body, headers), limits)
        assert fast == slow


def test_one_pass_decode_still_rejects_an_item_too_large_in_fields_it_drops() -> None:
    items = [{"type": "track", "event": "E", "userId": "u", "_metadata": {"pad": "x" * pad}} for pad in (10, 33_000, 10)]
    body = json.dumps({"batch": items}).encode()
    decoded = segment.decode(_request("/v1/batch", body, {"authorization": "Basic U0VHX1dSSVRFX0tFWTo="}), SourceLimits())
    assert len(decoded.events) == 2
    assert [(r.index, r.code) for r in decoded.rejects] == [(1, "event_too_large")]
