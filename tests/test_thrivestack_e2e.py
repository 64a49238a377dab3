"""ThriveStack end to end: a ThriveStack-dialect client and the Segment SDK post to a live
trackgate, which delivers to a file and to a ThriveStack API emulator; bad input, back-pressure,
and the destination's 401 pause, 400 dead letter, 413 split and 429/5xx retries."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from segment.analytics.client import Client

from adapters.thrivestack import DEFAULT_RETRY
from tests.emulators.thrivestack_api import ThriveStackEmulator
from tests.gatewayproc import GatewayProcess, get, post, wait_until

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "thrivestack" / "source"
IN_KEY = "ts-in-key"  # what ThriveStack-dialect clients send to trackgate
SEG_KEY = "segment-in-key"
OUT_KEY = "ts-out-key"  # what trackgate sends to ThriveStack
QUICK_RETRY = {"max_attempts": 3, "max_age_s": 0, "backoff_base_s": 0.05, "backoff_max_s": 0.2}
FAST = {"max_wait_ms": 50}


def config(ts_url: str, api_key: str = OUT_KEY, destination: dict | None = None, store: dict | None = None) -> dict:
    return {
        "store": {"path": "data/trackgate.db", **(store or {})},
        "sources": {
            "ts-app": {"format": "thrivestack", "keys": [IN_KEY], "destinations": ["thrivestack", "archive"]},
            "web": {"format": "segment", "keys": [SEG_KEY], "destinations": ["thrivestack"]},
        },
        "destinations": {
            "thrivestack": {
                "type": "thrivestack",
                "settings": {"api_key": api_key, "base_url": ts_url + "/api"},
                "batch": FAST,
                "retry": QUICK_RETRY,
                **(destination or {}),
            },
            "archive": {"type": "file", "settings": {"path": "out/events.jsonl"}, "batch": FAST},
        },
    }


def send(gateway, endpoint: str, items, key: str = IN_KEY):
    """POST like a ThriveStack client; (status, headers, parsed body)."""
    body = items if isinstance(items, bytes) else json.dumps(items).encode()
    headers = {"accept": "*/*", "content-type": "application/json", "x-api-key": key}
    status, reply_headers, reply = post(f"{gateway.url}/api/{endpoint}", body, headers)
    return status, {k.lower(): v for k, v in reply_headers.items()}, json.loads(reply)


def tracks(n: int, **fields) -> list[dict]:
    run = uuid.uuid4().hex[:8]
    return [{"event_name": "feature_used", "user_id": "u-1", "properties": {"n": i, "run": run},
             "timestamp": f"2026-11-23T11:26:27.{i:03d}Z", **fields} for i in range(n)]


def dest_stats(gateway, name: str = "thrivestack") -> dict:
    stats = json.loads(gateway.cli("stats", "--json").stdout)
    return stats["destinations"].get(name, {"pending": 0, "counters": {}, "dead_letters": 0})


def settled(gateway, name: str = "thrivestack") -> dict | None:
    stats = dest_stats(gateway, name)
    return stats if stats["pending"] == 0 else None


def metric(gateway, name: str, destination: str = "thrivestack") -> float:
    _, body = get(gateway.url + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and f'destination="{destination}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def docs_examples() -> list[tuple[str, list]]:
    cases = [json.loads(path.read_text()) for path in sorted(GOLDEN.glob("docs_*.json"))]
    return [(case["request"]["path"].rsplit("/", 1)[1], case["request"]["body"]) for case in cases]


def archived(tmp_path: Path, n: int) -> list[dict]:
    out = tmp_path / "out" / "events.jsonl"
    lines = wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= n and out.read_text().splitlines())
    return [json.loads(line) for line in lines]


# ---- ThriveStack in, ThriveStack and a file out ----------------------------------------


def test_thrivestack_client_round_trip(tmp_path):
    examples = docs_examples()
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor, GatewayProcess(tmp_path, config(vendor.url)) as gw:
        for endpoint, items in examples:
            status, _, body = send(gw, endpoint, items)
            assert status == 200 and body["success"] is True and body["eventId"].startswith("evt_"), body
        assert vendor.wait_for_items(len(examples)), gw.log()
        in_file = archived(tmp_path, len(examples))
        # a client's resend of the same array: acknowledged again, stored and delivered once
        endpoint, items = examples[0]
        status, _, body = send(gw, endpoint, items)
        assert status == 200 and body["success"] is True
        stats = wait_until(lambda: settled(gw))
        wait_until(lambda: settled(gw, "archive"))
        in_file = archived(tmp_path, len(examples))

    assert stats["counters"]["delivered"] == len(examples)
    assert vendor.item_count == len(examples) == len(in_file)
    for endpoint, items in examples:  # every field back where ThriveStack reads it
        want = {**items[0], "timestamp": items[0]["timestamp"].replace("Z", ".000Z")}
        assert vendor.items[endpoint].count(want) == 1, (endpoint, vendor.items[endpoint])
    for path, headers, _ in vendor.requests:
        assert headers["x-api-key"] == OUT_KEY and path in ("/api/identify", "/api/group", "/api/track")

    by_type = {}
    for event in in_file:  # canonical, with ThriveStack's names turned into the Spec's
        by_type.setdefault(event["type"], []).append(event)
        assert event["source"] == "ts-app" and event["messageId"].startswith("thrivestack-")
        assert event["userId"] == "18f716ac-37a4-464f-adb7-3cc30032308c"
        assert event["timestamp"] == event["originalTimestamp"] == "2024-01-15T10:30:00.000Z"
    (identify,) = by_type["identify"]
    assert identify["traits"] == {"email": "john.doe@acme.com", "name": "John Doe"}
    assert identify["context"] == {"groupId": "ac8db7ba-5139-4911-ba6e-523fd9c4704b", "sessionId": "session_e2iukz3vduo",
                                   "source": "product", "device": {"id": "7d08298f"}}
    (group,) = by_type["group"]
    assert group["groupId"] == "ac8db7ba-5139-4911-ba6e-523fd9c4704b" and group["traits"]["name"] == "Acme Corporation"
    (page,) = by_type["page"]
    assert page["properties"]["url"] == "https://acme.com/what_is_acme" and page["context"]["campaign"]["source"] == "newsletter"
    assert sorted(e["event"] for e in by_type["track"]) == ["account_created", "feature_used", "invite_sent", "signed_up"]


# ---- bad input, in ThriveStack's shape ------------------------------------------------


@pytest.fixture(scope="module")
def ingest_gateway(tmp_path_factory):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        workdir = tmp_path_factory.mktemp("ts-ingest")
        with GatewayProcess(workdir, config(vendor.url, destination={"paused": True})) as gw:
            yield gw, workdir


@pytest.mark.parametrize(
    "endpoint, body, status, code",
    [
        ("track", b'[{"event_name": "a", ', 400, "invalid_json"),
        ("track", b"", 400, "invalid_json"),
        ("track", json.dumps({"event_name": "a", "user_id": "u"}).encode(), 400, "invalid_body"),
        ("track", b"[]", 400, "no_events"),
        ("track", json.dumps([{"user_id": "u"}]).encode(), 400, "missing_event_name"),
        ("identify", json.dumps([{"traits": {"plan": "pro"}}]).encode(), 400, "missing_user_id"),
        ("group", json.dumps([{"user_id": "u"}]).encode(), 400, "missing_group_id"),
        ("track", json.dumps([{"event_name": "a", "user_id": "u", "timestamp": "soon"}]).encode(), 400, "invalid_timestamp"),
    ],
)
def test_bad_requests_get_a_clear_400(ingest_gateway, endpoint, body, status, code):
    gw, _ = ingest_gateway
    got_status, _, reply = send(gw, endpoint, body)
    assert got_status == status, reply
    assert reply["success"] is False and reply["error"] == code and reply["message"]


def test_a_bad_key_gets_401(ingest_gateway):
    gw, _ = ingest_gateway
    status, _, reply = send(gw, "track", tracks(1), key="not-a-key")
    assert status == 401 and reply == {"success": False, "error": "invalid_api_key",
                                       "message": "Unauthorized: invalid or missing API key (x-api-key)"}


def test_one_bad_item_refuses_the_whole_array(ingest_gateway):
    gw, workdir = ingest_gateway
    good, marker = tracks(2)
    status, _, reply = send(gw, "track", [good, {"event_name": "no_user"}])
    assert status == 400 and reply["error"] == "missing_user_id"
    assert reply["errors"] == [{"index": 1, "field": "user_id", "code": "missing_user_id", "message": "[1] user_id: required"}]
    assert send(gw, "track", [marker])[0] == 200
    events = archived(workdir, 1)
    properties = [e["properties"] for e in events]
    assert marker["properties"] in properties and good["properties"] not in properties  # nothing of it stored


def test_back_pressure_is_429_with_retry_after(tmp_path):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        settings = config(vendor.url, destination={"paused": True}, store={"max_backlog_bytes": 3000})
        settings["destinations"]["archive"]["paused"] = True
        with GatewayProcess(tmp_path, settings) as gw:
            answers = []
            for i in range(20):
                status, headers, reply = send(gw, "track", tracks(1, properties={"pad": "x" * 400, "i": i}))
                answers.append(status)
                if status != 200:
                    break
    assert answers[0] == 200 and answers[-1] == 429, answers
    assert reply["success"] is False and reply["error"] == "backpressure" and int(headers["retry-after"]) > 0


# ---- Segment SDK in, ThriveStack out ---------------------------------------------------


def test_segment_sdk_to_thrivestack(tmp_path):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor, GatewayProcess(tmp_path, config(vendor.url)) as gw:
        errors = []
        client = Client(SEG_KEY, host=gw.url, max_retries=0, on_error=lambda e, b: errors.append(e))
        context = {"sessionId": "s-77", "source": "product", "groupId": "acme", "device": {"id": "dev-1"}, "ip": "203.0.113.9"}
        client.identify("user-1", {"email": "ada@example.com", "firstName": "Ada", "createdAt": "2024-01-01T00:00:00Z"}, context=context)
        client.group("user-1", "acme", {"name": "Acme Inc", "plan": "enterprise", "employees": 120})
        client.track("user-1", "Signed Up", {"type": "organic"}, context=context)
        client.track("user-1", "Order Completed", {"revenue": 42.5, "currency": "EUR"})
        client.page("user-1", "Docs", "Install", {"url": "https://example.com/docs/install", "path": "/docs/install", "title": "Install"})
        client.screen("user-1", "Onboarding", "Welcome", {"step": 1})
        client.alias("anon-7", "user-1")
        client.track(anonymous_id="anon-9", event="Viewed Pricing")
        client.flush()
        client.join()
        assert errors == []
        assert vendor.wait_for_items(6), gw.log()
        stats = wait_until(lambda: settled(gw))

    assert vendor.item_count == 6
    (identify,) = vendor.items["identify"]
    assert identify["user_id"] == "user-1"
    assert identify["traits"] == {"user_email": "ada@example.com", "first_name": "Ada", "created_at": "2024-01-01T00:00:00Z"}
    assert identify["context"] == {"group_id": "acme", "device_id": "dev-1", "session_id": "s-77", "source": "product"}
    (group,) = vendor.items["group"]
    assert group["group_id"] == group["context"]["group_id"] == "acme"
    assert group["traits"] == {"account_name": "Acme Inc", "plan": "enterprise", "employees": 120}
    by_name = {item["event_name"]: item for item in vendor.items["track"]}
    assert set(by_name) == {"signed_up", "Order Completed", "page_visit", "screen_viewed"}
    assert by_name["signed_up"]["properties"] == {"type": "organic"}
    assert by_name["signed_up"]["context"]["session_id"] == "s-77"
    assert by_name["Order Completed"]["properties"] == {"revenue": 42.5, "currency": "EUR"}
    assert by_name["page_visit"]["properties"] == {"page_url": "https://example.com/docs/install", "page_path": "/docs/install",
                                                   "page_title": "Install", "page_name": "Install", "page_category": "Docs"}
    assert by_name["screen_viewed"]["properties"] == {"step": 1, "screen_name": "Welcome", "screen_category": "Onboarding"}
    assert all(item["timestamp"].endswith("Z") for _, item in vendor.received)
    # identify and group arrive before the tracks of the same batch
    endpoints = [path for path, _, _ in vendor.requests]
    assert endpoints.index("/api/track") > max(endpoints.index("/api/identify"), endpoints.index("/api/group"))
    assert stats["counters"]["skipped_alias_unsupported"] == 1
    assert stats["counters"]["skipped_missing_user_id"] == 1


# ---- destination errors ------------------------------------------------------------------


def test_401_pauses_until_the_key_is_fixed(tmp_path):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        gw = GatewayProcess(tmp_path, config(vendor.url, api_key="revoked-key"))
        with gw:
            assert send(gw, "track", tracks(3))[0] == 200
            assert vendor.wait_until(lambda: len(vendor.attempts) >= 1), gw.log()
            status, body = get(gw.url + "/readyz")
            ready = json.loads(body)
            assert "http_401" in ready["paused_destinations"]["thrivestack"]
            assert "api_key" in ready["paused_destinations"]["thrivestack"]
            assert not vendor.wait_until(lambda: len(vendor.attempts) > 1, timeout=1.5)  # no retry storm
            stats = dest_stats(gw)
            assert stats["pending"] == 3 and stats["dead_letters"] == 0
            assert metric(gw, "trackgate_destination_paused") == 1.0
            log = gw.log()
            assert "paused" in log and "thrivestack" in log and "revoked-key" not in log
        assert [a.status for a in vendor.attempts] == [401] and vendor.item_count == 0

        fixed = config(vendor.url)
        gw = GatewayProcess(tmp_path, fixed)
        with gw:
            assert vendor.wait_for_items(3), gw.log()
            wait_until(lambda: settled(gw))
            status, body = get(gw.url + "/readyz")
            assert status == 200 and json.loads(body)["paused_destinations"] == {}
    assert sorted(item["properties"]["n"] for _, item in vendor.received) == [0, 1, 2]


def test_400_bisects_and_dead_letters_only_the_bad_item(tmp_path):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        vendor.refuse_items(lambda endpoint, item: item.get("properties", {}).get("n") == 2)
        with GatewayProcess(tmp_path, config(vendor.url)) as gw:
            assert send(gw, "track", tracks(4))[0] == 200
            stats = wait_until(lambda: settled(gw))
            listed = gw.cli("dlq", "list", "--destination", "thrivestack")
    assert sorted(item["properties"]["n"] for _, item in vendor.received) == [0, 1, 3]
    assert stats["dead_letters"] == 1 and stats["counters"]["delivered"] == 3
    assert "http_400" in listed.stdout
    sizes = [(a.status, len(json.loads(a.raw))) for a in vendor.attempts]
    assert sizes[0] == (400, 4) and (400, 1) in sizes and len(sizes) <= 7


def test_400_of_a_single_event_is_dead_at_once(tmp_path):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        vendor.fail_next(1, status=400, body={"success": False, "message": "Bad Request"})
        with GatewayProcess(tmp_path, config(vendor.url)) as gw:
            assert send(gw, "track", tracks(1))[0] == 200
            stats = wait_until(lambda: (s := dest_stats(gw))["dead_letters"] == 1 and s)
            shown = gw.cli("dlq", "show", gw.cli("dlq", "list").stdout.splitlines()[1].split()[0])
    assert len(vendor.attempts) == 1 and stats["pending"] == 0
    assert "HTTP 400" in shown.stdout and "/api/track" in shown.stdout


def test_413_splits_the_array(tmp_path):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        vendor.fail_next(1, status=413)
        with GatewayProcess(tmp_path, config(vendor.url)) as gw:
            assert send(gw, "track", tracks(4))[0] == 200
            assert vendor.wait_for_items(4)
            wait_until(lambda: settled(gw))
    assert [len(json.loads(a.raw)) for a in vendor.attempts] == [4, 2, 2]
    assert sorted(item["properties"]["n"] for _, item in vendor.received) == [0, 1, 2, 3]


def test_429_is_retried_without_duplicates(tmp_path):
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        vendor.fail_next(1, status=429, headers={"Retry-After": "1"})
        with GatewayProcess(tmp_path, config(vendor.url)) as gw:
            assert send(gw, "track", tracks(3))[0] == 200
            assert vendor.wait_for_items(3)
            stats = wait_until(lambda: settled(gw))
            duplicates = metric(gw, "trackgate_delivery_possible_duplicates_total")
    assert [a.status for a in vendor.attempts] == [429, 200]
    assert vendor.item_count == 3 and stats["counters"]["delivered"] == 3
    assert duplicates == 0  # a 429 was not taken: its retry cannot duplicate


def test_5xx_retries_deliver_everything_and_count_possible_duplicates(tmp_path):
    """ThriveStack took the array but answered 500: the retry duplicates it, and says so."""
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        vendor.accept_then_fail(1, status=500)
        vendor.fail_next(1, status=502)  # answered before acceptance: nothing taken
        with GatewayProcess(tmp_path, config(vendor.url)) as gw:
            assert send(gw, "track", tracks(3))[0] == 200
            stats = wait_until(lambda: (s := settled(gw)) and s["counters"].get("delivered") == 3 and s)
            duplicates = metric(gw, "trackgate_delivery_possible_duplicates_total")
    assert [a.status for a in vendor.attempts] == [502, 500, 200]
    received = sorted(item["properties"]["n"] for _, item in vendor.received)
    assert received == [0, 0, 1, 1, 2, 2]  # nothing lost; the 500's array arrived twice
    assert duplicates == 6  # both retries of all 3 events counted (a 502 may have been taken too)
    assert stats["counters"]["possible_duplicates"] == 6 and stats["dead_letters"] == 0


def test_the_default_retry_budget_gives_up_quickly(tmp_path):
    """No `retry:` block: ThriveStack's small DEFAULT_RETRY applies, not 12 tries in 4 hours."""
    with ThriveStackEmulator(api_key=OUT_KEY) as vendor:
        vendor.always(500)
        settings = config(vendor.url)
        settings["destinations"]["thrivestack"]["retry"] = {"max_age_s": 0, "backoff_base_s": 0.05, "backoff_max_s": 0.1}
        with GatewayProcess(tmp_path, settings) as gw:
            assert send(gw, "track", tracks(1))[0] == 200
            wait_until(lambda: dest_stats(gw)["dead_letters"] == 1)
    assert len(vendor.attempts) == DEFAULT_RETRY["max_attempts"]


# ---- the emulator on its own ---------------------------------------------------------------


def test_emulator_checks_what_thrivestack_documents():
    with ThriveStackEmulator(api_key="k") as vendor:
        url = vendor.url + "/api/track"
        headers = {"x-api-key": "k", "content-type": "application/json"}
        assert post(url, b'[{"event_name":"a","user_id":"u"}]', {**headers, "x-api-key": "bad"})[0] == 401
        assert post(url, b'{"event_name":"a","user_id":"u"}', headers)[0] == 400
        assert post(url, b'[{"event_name":"a"}]', headers)[0] == 400
        assert post(vendor.url + "/api/group", b'[{"user_id":"u"}]', headers)[0] == 400
        status, _, body = post(url, b'[{"event_name":"a","user_id":"u"}]', headers)
        assert status == 200 and json.loads(body) == {"success": True, "eventId": "evt_1"}
        assert [a.status for a in vendor.attempts] == [401, 400, 400, 400, 200] and vendor.items["track"] == [{"event_name": "a", "user_id": "u"}]


def test_emulator_runs_as_a_process():
    command = [sys.executable, "-m", "tests.emulators.thrivestack_api", "--port", "0", "--api-key", "k"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        body = b'[{"user_id":"u"},{"user_id":"v"}]'
        assert post(url + "/api/identify", body, {"x-api-key": "k"})[0] == 200
        status, stats = get(url + "/stats")
        assert status == 200 and json.loads(stats) == {"identify": 2, "track": 0, "group": 0, "items": 2, "requests": 1, "attempts": 1}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()
