"""Ingest over real HTTP: every bad-input class gets a clear 4xx in Segment's shape, never a
5xx; browser and RudderStack quirks are accepted; back-pressure turns into 503."""

import base64
import gzip
import json

import pytest

from tests.gatewayproc import GatewayProcess, get, post

KEY = "ingest-key"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


def gateway_config(**store) -> dict:
    return {
        "store": {"path": "data/trackgate.db", **store},
        "sources": {"web": {"format": "segment", "keys": [KEY], "destinations": ["archive"]}},
        "destinations": {"archive": {"type": "file", "paused": True, "settings": {"path": "events.jsonl"}}},
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with GatewayProcess(tmp_path_factory.mktemp("ingest"), gateway_config()) as gw:
        yield gw


def track(**fields) -> bytes:
    return json.dumps({"userId": "u1", "event": "Clicked", **fields}).encode()


def call(gateway, path, body: bytes, headers=None):
    status, reply_headers, reply = post(gateway.url + path, body, {**AUTH, **(headers or {})})
    return status, {k.lower(): v for k, v in reply_headers.items()}, json.loads(reply) if reply else None


def assert_error(result, status, code):
    got_status, _, body = result
    assert got_status == status, body
    assert body["success"] is False and body["code"] == status and body["error"] == code
    assert body["message"]


def test_a_valid_call_is_acknowledged(gateway):
    status, _, body = call(gateway, "/v1/track", track())
    assert (status, body) == (200, {"success": True})


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("/v1/track", b"{not json", 400, "invalid_json"),
        ("/v1/track", b"[1, 2]", 400, "invalid_json"),
        ("/v1/batch", b'{"batch": "nope"}', 400, "invalid_batch"),
        ("/v1/track", track(userId=42), 400, "invalid_field"),
        ("/v1/track", track(properties="a string"), 400, "invalid_field"),
        ("/v1/track", track(event=None), 400, "missing_event"),
        ("/v1/identify", json.dumps({"traits": {"a": 1}}).encode(), 400, "missing_identifier"),
        ("/v1/group", json.dumps({"userId": "u"}).encode(), 400, "missing_group_id"),
        ("/v1/track", track(timestamp="yesterday"), 400, "invalid_timestamp"),
        ("/v1/track", track(properties={"blob": "x" * 40_000}), 400, "event_too_large"),
        ("/v1/track", b'{"userId":"u","event":"e","properties":' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400, "too_deeply_nested"),
        ("/v1/track", b'{"userId":"u","event":"e","properties":' + b"[" * 5_000 + b"]" * 5_000 + b"}", 400, "too_deeply_nested"),
    ],
)
def test_bad_input_gets_a_clear_4xx(gateway, path, body, status, code):
    assert_error(call(gateway, path, body), status, code)


def test_oversize_request_is_413_before_reading_it_all(gateway):
    body = json.dumps({"batch": [json.loads(track(n=i, pad="x" * 1000)) for i in range(600)]}).encode()
    assert_error(call(gateway, "/v1/batch", body), 413, "request_too_large")


def test_gzip_bomb_is_refused(gateway):
    bomb = gzip.compress(b'{"userId":"u","event":"e","p":"' + b"0" * 50_000_000 + b'"}', compresslevel=9)
    assert len(bomb) < 100_000
    assert_error(call(gateway, "/v1/track", bomb, {"Content-Encoding": "gzip"}), 413, "request_too_large")


def test_corrupt_gzip_and_unknown_encodings(gateway):
    assert_error(call(gateway, "/v1/track", b"not gzip", {"Content-Encoding": "gzip"}), 400, "invalid_encoding")
    assert_error(call(gateway, "/v1/track", track(), {"Content-Encoding": "br"}), 415, "unsupported_encoding")


def test_bad_or_missing_key_is_401(gateway):
    bad = {"Authorization": "Basic " + base64.b64encode(b"wrong:").decode()}
    status, _, body = post(gateway.url + "/v1/track", track(), bad)
    assert status == 401 and json.loads(body)["error"] == "invalid_write_key"
    status, _, body = post(gateway.url + "/v1/track", track(), {})
    assert status == 401


def test_browser_beacon_text_plain_with_key_in_body(gateway):
    body = track(writeKey=KEY, anonymousId="a-1", messageId="ajs-next-1-abc")
    status, _, reply = post(gateway.url + "/v1/t", body, {"Content-Type": "text/plain"})
    assert (status, json.loads(reply)) == (200, {"success": True})


def test_rudder_node_gzipped_json_labelled_form_urlencoded(gateway):
    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e", "originalTimestamp": "2026-01-01T00:00:00.000Z"}]}).encode())
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}
    assert call(gateway, "/v1/batch", body, headers)[0] == 200


def test_partly_valid_batch_accepts_the_good_and_records_the_bad(gateway):
    body = json.dumps(
        {"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "track", "userId": "u"}, {"type": "track", "event": "no-id"}]}
    ).encode()
    assert call(gateway, "/v1/batch", body)[:1] == (200,)
    listed = gateway.cli("rejected", "--payload")
    assert listed.returncode == 0
    assert "missing_event" in listed.stdout and "missing_identifier" in listed.stdout and '"no-id"' in listed.stdout


def test_cors_preflight_and_exposed_retry_after(gateway):
    import urllib.request

    request = urllib.request.Request(
        gateway.url + "/v1/t",
        method="OPTIONS",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Headers": "authorization,x-retry-count"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "authorization" in response.headers["Access-Control-Allow-Headers"]
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
    _, headers, _ = call(gateway, "/v1/t", track(), {"Origin": "https://shop.example"})
    assert headers["access-control-expose-headers"] == "Retry-After"
    assert headers["access-control-allow-origin"] == "https://shop.example"


def test_health_readiness_and_unknown_routes(gateway):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert get(gateway.url + path)[0] == 200
    assert get(gateway.url + "/nope")[0] == 404
    assert get(gateway.url + "/v1/track")[0] == 405


def test_metrics_count_requests_and_events(gateway):
    import urllib.request

    call(gateway, "/v1/track", track())
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'trackgate_requests_total{result="ok",source="web"}' in text
    assert 'trackgate_events_total{result="accepted",source="web"}' in text
    assert 'trackgate_backlog_events{destination="archive"}' in text


def test_backlog_cap_turns_into_503_with_retry_after(tmp_path):
    with GatewayProcess(tmp_path, gateway_config(max_backlog_bytes=3000)) as gw:
        statuses = []
        for i in range(20):
            status, headers, body = call(gw, "/v1/track", track(messageId=f"m-{i}", properties={"pad": "x" * 400}))
            statuses.append(status)
            if status != 200:
                break
        assert statuses[0] == 200 and statuses[-1] == 503, statuses
        assert body["error"] == "backpressure" and int(headers["retry-after"]) > 0
        status, body = get(gw.url + "/readyz")
        assert status == 503 and b"back-pressure" in body
