"""Golden fixtures: every tests/golden/<adapter>/<kind>/<case>.json, run by the runner for <kind>.

<adapter> is the registry name; <kind> is one of:

source       {"request": {"path", "method"?, "headers"?, "body" | "body_text" | "body_b64"},
              "limits"?: SourceLimits fields,
              "expect": {"key", "events": [canonical JSON], "rejects"?: [{"index", "code"}]}
                      | {"error": {"status", "code"}}}
             A JSON "body" is sent as json.dumps(body, separators=(",", ":"),
             ensure_ascii=False) in UTF-8. Each reject's payload must be the rejected item.
reply        {"request"?: {...}, "ok": {"accepted", "duplicates"}
                                 | "error": {"status", "code", "message", "retry_after_s"?,
                                            "rejects"?: [Reject fields]},
              "expect": {"status", "body" | "body_text", "headers"?: {...}}}
destination  {"settings", "events": [canonical JSON, encoded like a JSON "body"],
              "expect": {"requests": [{"url", "method"?, "headers", "events"?,
                                       "body" | "body_text" | "body_lines" (optional)}]}}
classify     {"settings", "events", "request"?: index of the built request (0),
              "response": {"status", "headers"?, "body" | "body_text"},
              "expect": ["<status>:<code>" | {"status", "code", "retry_after_s"}, ...]}
settings     {"settings", "expect": {"settings"?: normalised, "batch_limits"?: {...}}
                                  | {"error": "<substring of the message>"}}
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
import pytest

from gateway import registry
from gateway.adapter import (
    BatchLimits,
    InboundRequest,
    IngestError,
    Reject,
    Response,
    SourceLimits,
    decode_event,
    encode_event,
)

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*/*/*.json"))
RECEIVED_AT = "2026-11-23T11:26:28.000Z"


def _id(path: Path) -> str:
    return "/".join(path.relative_to(GOLDEN).with_suffix("").parts)


@pytest.mark.parametrize("path", CASES, ids=_id)
def test_golden(path: Path) -> None:
    adapter, kind = path.parts[-3], path.parts[-2]
    assert kind in RUNNERS, f"unknown fixture kind {kind!r} (one of {sorted(RUNNERS)})"
    case = json.loads(path.read_text(encoding="utf-8"))
    RUNNERS[kind](registry.load(adapter), case)


def test_fixtures_exist() -> None:
    assert CASES, f"no fixtures under {GOLDEN}"


# ---- building inputs ---------------------------------------------------------------


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _body(spec: dict) -> bytes:
    if "body_text" in spec:
        return spec["body_text"].encode("utf-8")
    if "body_b64" in spec:
        return base64.b64decode(spec["body_b64"])
    if "body" in spec:
        return _json(spec["body"])
    return b""


def _inbound(spec: dict) -> InboundRequest:
    headers = {name.lower(): value for name, value in spec.get("headers", {}).items()}
    return InboundRequest(
        spec.get("method", "POST"), spec.get("path", "/"), headers, _body(spec),
        spec.get("received_at", RECEIVED_AT), spec.get("client_ip"),
    )


def _events(case: dict) -> list:
    return [decode_event(_json(event)) for event in case["events"]]


def _settings(module, case: dict):
    return msgspec.convert(case["settings"], module.Settings)


def _canonical(event) -> dict:
    return json.loads(encode_event(event))


# ---- runners -----------------------------------------------------------------------


def run_source(module, case: dict) -> None:
    request = _inbound(case["request"])
    limits = msgspec.convert(case.get("limits", {}), SourceLimits)
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(IngestError) as info:
            module.decode(request, limits)
        assert {"status": info.value.status, "code": info.value.code} == expect["error"]
        assert info.value.message
        return
    decoded = module.decode(request, limits)
    assert decoded.key == expect["key"]
    assert [_canonical(event) for event in decoded.events] == expect["events"]
    rejects = [{"index": r.index, "code": r.code} for r in decoded.rejects]
    assert rejects == expect.get("rejects", [])
    body = _loads(request.body) if decoded.rejects else None
    for reject in decoded.rejects:
        assert reject.message
        assert _loads(reject.payload) in _candidates(body, reject.index)


def _loads(data: bytes):
    return json.loads(data.decode("utf-8", "replace"))  # rejects may hold invalid UTF-8


def _candidates(body, index: int) -> list:
    """What a reject's payload may be: the whole body, or item `index` of a list in it."""
    if isinstance(body, dict):
        lists = list(body.values())
    else:
        lists = [body] if isinstance(body, list) else []
    return [body] + [seq[index] for seq in lists if isinstance(seq, list) and index < len(seq)]


def run_reply(module, case: dict) -> None:
    request = _inbound(case.get("request", {}))
    if "ok" in case:
        reply = module.reply_ok(request, case["ok"]["accepted"], case["ok"]["duplicates"])
    else:
        spec = case["error"]
        rejects = [msgspec.convert(r, Reject) for r in spec.get("rejects", [])]
        error = IngestError(spec["status"], spec["code"], spec["message"], spec.get("retry_after_s"), rejects)
        reply = module.reply_error(request, error)
    expect = case["expect"]
    assert reply.status == expect["status"]
    if "body_text" in expect:
        assert reply.body == expect["body_text"].encode()
    else:
        assert json.loads(reply.body) == expect["body"]
    assert dict(reply.headers) == expect.get("headers", {})
    if "content_type" in expect:
        assert reply.content_type == expect["content_type"]


def run_destination(module, case: dict) -> None:
    settings = _settings(module, case)
    events = _events(case)
    requests = module.build_requests(events, settings)
    _check_limits(requests, len(events), module.batch_limits(settings))
    expected = case["expect"]["requests"]
    assert len(requests) == len(expected)
    for request, want in zip(requests, expected):
        assert request.url == want["url"]
        assert request.method == want.get("method", "POST")
        assert dict(request.headers) == want["headers"]
        if "events" in want:
            assert list(request.events) == want["events"]
        if "body_text" in want:
            assert request.body == want["body_text"].encode()
        if "body" in want:
            assert json.loads(request.body) == want["body"]
        if "body_lines" in want:
            assert request.body.endswith(b"\n")
            lines = request.body.decode().split("\n")[:-1]
            assert [json.loads(line) for line in lines] == want["body_lines"]


def _check_limits(requests: list, count: int, limits: BatchLimits) -> None:
    """Every event in a request; at any one endpoint at most once and in order (an event
    may go to two endpoints, as Amplitude's group does); no request over the limits."""
    assert {i for request in requests for i in request.events} == set(range(count))
    by_url: dict[str, list[int]] = {}
    for request in requests:
        by_url.setdefault(request.url, []).extend(request.events)
    assert all(indexes == sorted(set(indexes)) for indexes in by_url.values())
    for request in requests:
        assert len(request.events) <= limits.max_events
        assert len(request.body) <= limits.max_bytes or len(request.events) == 1


def run_classify(module, case: dict) -> None:
    settings = _settings(module, case)
    request = module.build_requests(_events(case), settings)[case.get("request", 0)]
    spec = case["response"]
    headers = {name.lower(): value for name, value in spec.get("headers", {}).items()}
    verdicts = module.classify(request, Response(spec["status"], headers, _body(spec)))
    assert len(verdicts) == len(request.events)
    got = []
    for verdict, want in zip(verdicts, case["expect"]):
        if isinstance(want, str):
            got.append(f"{verdict.status}:{verdict.code}")
        else:
            got.append({"status": verdict.status, "code": verdict.code,
                        "retry_after_s": verdict.retry_after_s})
    assert got == case["expect"]


def run_settings(module, case: dict) -> None:
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(msgspec.ValidationError, match=expect["error"]):
            _settings(module, case)
        return
    settings = _settings(module, case)
    if "settings" in expect:
        assert msgspec.to_builtins(settings) == expect["settings"]
    if "batch_limits" in expect:
        assert msgspec.to_builtins(module.batch_limits(settings)) == expect["batch_limits"]


RUNNERS = {
    "source": run_source,
    "reply": run_reply,
    "destination": run_destination,
    "classify": run_classify,
    "settings": run_settings,
}
