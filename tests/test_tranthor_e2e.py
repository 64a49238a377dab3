"""Tranthor end to end: the official Dittofeed Node SDK and a Tranthor-dialect client post to a
live trackgate; events arrive at a Tranthor API emulator (and a Segment emulator and a file);
the gateway answers like Dittofeed; delivery errors (401, 400, 413, 429, 5xx, a lost reply)."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

from tests.emulators.segment_api import SegmentEmulator
from tests.emulators.tranthor_api import TranthorEmulator
from tests.gatewayproc import GatewayProcess, get, post, wait_until

NODE_DIR = Path(__file__).parent / "node"
IN_TOKEN = "d2staWQtMTp3ay1zZWNyZXQtMg=="  # what follows "Basic " in the SDK's writeKey
OUT_TOKEN = "dGFyZ2V0LWlkOnRhcmdldC1zZWNyZXQ="
SEGMENT_KEY = "segment-out"
AUTH = {"authorization": f"Basic {IN_TOKEN}", "Content-Type": "application/json"}
BATCH = "/api/public/apps/batch"
QUICK_RETRY = {"max_attempts": 3, "max_age_s": 0, "backoff_base_s": 0.05, "backoff_max_s": 0.2}


def run_sdk(script: Path, host: str, calls: list[dict]) -> dict:
    spec = {"host": host, "writeKey": f"Basic {IN_TOKEN}", "calls": calls}
    done = subprocess.run(["node", str(script)], input=json.dumps(spec), capture_output=True, text=True,
                          timeout=60, cwd=NODE_DIR)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def config(tranthor_url: str, segment_url: str | None = None, write_key: str = OUT_TOKEN, limits=None) -> dict:
    destinations = {
        "tranthor": {"type": "tranthor", "settings": {"write_key": write_key, "base_url": tranthor_url},
                     "batch": {"max_wait_ms": 20}, "retry": QUICK_RETRY},
        "archive": {"type": "file", "settings": {"path": "out/events.jsonl"}, "batch": {"max_wait_ms": 20}},
    }
    if segment_url:
        destinations["segment"] = {"type": "segment", "settings": {"write_key": SEGMENT_KEY, "base_url": segment_url},
                                   "batch": {"max_wait_ms": 20}}
    source = {"format": "tranthor", "keys": [IN_TOKEN], "destinations": list(destinations)}
    if limits:
        source["limits"] = limits
    return {"sources": {"app": source}, "destinations": destinations}


def send(gateway, items: list[dict], path: str = BATCH, headers=None) -> tuple[int, bytes]:
    body = {"batch": items} if path == BATCH else items
    status, _, reply = post(gateway.url + path, json.dumps(body).encode(), headers or AUTH)
    return status, reply


def tracks(n: int) -> list[dict]:
    return [{"type": "track", "messageId": str(uuid.uuid4()), "userId": "u-1", "event": f"E{i}"} for i in range(n)]


def dest_stats(gateway, name: str = "tranthor") -> dict:
    stats = json.loads(gateway.cli("stats", "--json").stdout)
    return stats["destinations"].get(name, {"pending": 0, "counters": {}, "dead_letters": 0})


def archived(tmp_path: Path, n: int) -> list[dict]:
    out = tmp_path / "out" / "events.jsonl"
    lines = wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= n and out.read_text().splitlines())
    return [json.loads(line) for line in lines]


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- the official Node SDK ------------------------------------------------------------

SDK_CALLS = [
    {"method": "identify", "params": {"userId": "user-1", "traits": {"email": "ada@example.com", "firstName": "Ada"},
                                      "context": {"ip": "192.0.2.1", "locale": "en-GB"},
                                      "timestamp": "2026-11-23T11:00:00.000Z"}},
    {"method": "track", "params": {"userId": "user-1", "event": "Order Completed", "messageId": "order-42",
                                   "properties": {"revenue": 42.5, "items": [{"sku": "A1", "qty": 2}]}}},
    {"method": "page", "params": {"userId": "user-1", "name": "Pricing", "properties": {"url": "https://example.com/pricing"}}},
    {"method": "screen", "params": {"userId": "user-1", "name": "Welcome", "properties": {"step": 1},
                                    "timestamp": "2026-11-23T11:00:03.250Z"}},
    {"method": "track", "params": {"anonymousId": "anon-9", "event": "Viewed Pricing", "properties": {"k": "v"}}},
    {"method": "identify", "params": {"anonymousId": "anon-9", "traits": {"referrer": "ad"}}},
]


def _key(item: dict) -> tuple:
    return (item["type"], item.get("userId"), item.get("anonymousId"), item.get("event") or item.get("name"))


def test_node_sdk_calls_arrive_at_tranthor_segment_and_the_file(tmp_path, node_sdk):
    started = datetime.now(timezone.utc)
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor, SegmentEmulator(write_key=SEGMENT_KEY) as segment:
        with GatewayProcess(tmp_path, config(tranthor.url, segment.url)) as gateway:
            result = run_sdk(node_sdk, gateway.url, SDK_CALLS)
            assert result["version"] == "0.1.2"
            assert result["flushes"] == [{"ok": True}, {"ok": True}]  # trackgate's 204 is a success to it
            assert tranthor.wait_for_events(len(SDK_CALLS)), gateway.log()
            assert segment.wait_for_events(len(SDK_CALLS)), gateway.log()
            in_file = archived(tmp_path, len(SDK_CALLS))
    ended = datetime.now(timezone.utc)

    at_tranthor = {_key(item): item for item in tranthor.events}
    at_segment = {_key(item): item for item in segment.events}
    stored = {_key(item): item for item in in_file}
    assert len(at_tranthor) == len(tranthor.events) == len(SDK_CALLS)  # each once
    for call in SDK_CALLS:
        params = call["params"]
        key = _key({"type": call["method"], **params})
        sent = at_tranthor[key]
        # Tranthor gets what the SDK sent, field for field, plus the event time
        expected = {"type": call["method"], **params, "messageId": sent["messageId"]}
        expected.setdefault("timestamp", sent["timestamp"])
        assert sent == expected
        assert sent["messageId"] == params.get("messageId", sent["messageId"])
        if "messageId" not in params:
            assert uuid.UUID(sent["messageId"]).version == 4  # the SDK's own id, kept
        if "timestamp" not in params:  # no time from the SDK: trackgate's receipt time
            assert started <= _iso(sent["timestamp"]) <= ended
        # the other destinations: the same event in their shape, same id and time
        for other in (at_segment[key], stored[key]):
            assert other["messageId"] == sent["messageId"] and other["timestamp"] == sent["timestamp"]
            for field in ("traits", "properties", "context", "event", "name", "userId", "anonymousId"):
                assert other.get(field) == params.get(field), (field, other)
        assert stored[key]["source"] == "app" and "source" not in at_segment[key]
    for headers, _ in tranthor.requests:
        assert headers["authorization"] == f"Basic {OUT_TOKEN}"


# ---- a Tranthor-dialect client: every field, both paths ---------------------------------

EVERY_FIELD = [
    {"messageId": "m-1", "type": "identify", "userId": "u-1", "anonymousId": "a-1",
     "traits": {"email": "ada@example.com", "plan": "pro"}, "timestamp": "2026-11-23T11:00:00.000Z",
     "context": {"locale": "de-DE"}, "integrations": {"Amplitude": False}},
    {"messageId": "m-2", "type": "track", "userId": "u-1", "event": "Uploaded", "properties": {"size": 3},
     "files": [{"type": "Base64Encoded", "name": "a.txt", "mimeType": "text/plain", "data": "aGk="}],
     "timestamp": "2026-11-23T11:00:01.000Z"},
    {"messageId": "m-3", "type": "page", "anonymousId": "a-1", "name": "Home", "category": "Docs",
     "properties": {"url": "https://example.com/"}, "timestamp": "2026-11-23T11:00:02.000Z"},
    {"messageId": "m-4", "type": "screen", "userId": "u-1", "name": "Welcome", "properties": {"step": 1},
     "timestamp": "2026-11-23T11:00:03.000Z"},
    {"messageId": "m-5", "type": "group", "userId": "u-1", "groupId": "acme", "traits": {"name": "Acme"},
     "assigned": False, "timestamp": "2026-11-23T11:00:04.000Z"},
]
BATCH_CONTEXT = {"ip": "192.0.2.1", "locale": "en-US"}


def test_tranthor_client_round_trip_keeps_every_field(tmp_path):
    singles = [{**item, "messageId": item["messageId"] + "-single"} for item in EVERY_FIELD]
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        with GatewayProcess(tmp_path, config(tranthor.url)) as gateway:
            status, headers, reply = post(gateway.url + BATCH, json.dumps({"batch": EVERY_FIELD, "context": BATCH_CONTEXT}).encode(), AUTH)
            assert (status, reply) == (204, b"")
            lowered = {name.lower() for name in headers}
            assert "content-type" not in lowered and "content-length" not in lowered  # 204: no content headers
            status, _, reply = post(gateway.url + BATCH, b'{"batch":[]}', AUTH)
            assert (status, reply) == (204, b"")  # an empty batch is a success, as in Dittofeed
            for item in singles:  # the docs' curl form: PublicWriteKey beside authorization
                path = "/api/public/apps/" + item["type"]
                body = {k: v for k, v in item.items() if k != "type"}
                headers = {"PublicWriteKey": f"Basic {IN_TOKEN}", **AUTH}
                assert send(gateway, body, path, headers) == (204, b"")
            assert tranthor.wait_for_events(2 * len(EVERY_FIELD)), gateway.log()
    merged = [{**item, "context": {**BATCH_CONTEXT, **item.get("context", {})}} for item in EVERY_FIELD]
    by_id = {item["messageId"]: item for item in tranthor.events}
    assert [by_id[item["messageId"]] for item in merged] == merged
    assert [by_id[item["messageId"]] for item in singles] == singles


# ---- the gateway answers like Dittofeed -----------------------------------------------


def test_gateway_refusals_are_dittofeeds(tmp_path):
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        cfg = config(tranthor.url, limits={"max_request_bytes": 4096})
        with GatewayProcess(tmp_path, cfg) as gateway:
            alias = {"messageId": "a", "userId": "u", "previousId": "p"}
            assert send(gateway, alias, "/api/public/apps/alias") == (400, b'{"message":"Not yet implemented."}')
            bad_key = {**AUTH, "authorization": "Basic nope"}
            assert send(gateway, tracks(1), headers=bad_key) == (401, b'{"message":"InvalidWriteKey"}')
            refused = tracks(2)
            del refused[1]["messageId"]
            status, reply = send(gateway, refused)
            assert status == 400 and json.loads(reply) == {
                "statusCode": 400, "code": "FST_ERR_VALIDATION", "error": "Bad Request",
                "message": "body/batch/1 must have required property 'messageId'"}
            form = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
            status, reply = send(gateway, tracks(1), headers=form)
            assert status == 415 and json.loads(reply)["code"] == "FST_ERR_CTP_INVALID_MEDIA_TYPE"
            status, reply = send(gateway, [{**tracks(1)[0], "properties": {"pad": "x" * 5000}}])
            assert status == 413 and json.loads(reply)["code"] == "FST_ERR_CTP_BODY_TOO_LARGE"
            accepted = tracks(1)
            assert send(gateway, accepted) == (204, b"")
            assert tranthor.wait_for_events(1)
            wait_until(lambda: dest_stats(gateway)["pending"] == 0)
    # the valid item of the refused request was not stored: only the last one arrived
    assert [item["messageId"] for item in tranthor.events] == [accepted[0]["messageId"]]


def test_a_source_without_limits_takes_dittofeeds_5_mib(tmp_path):
    """Segment's 32 KB per event would refuse what Dittofeed takes, and its SDK never retries."""
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        with GatewayProcess(tmp_path, config(tranthor.url)) as gateway:
            big = [{**tracks(1)[0], "properties": {"pad": "x" * 200_000}}]
            assert send(gateway, big) == (204, b"")
            assert tranthor.wait_for_events(1)


def test_aliases_from_another_dialect_are_skipped_and_counted(tmp_path):
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        cfg = config(tranthor.url)
        cfg["sources"]["web"] = {"format": "segment", "keys": ["seg-in"], "destinations": ["tranthor"]}
        with GatewayProcess(tmp_path, cfg) as gateway:
            batch = [{"type": "alias", "userId": "u-1", "previousId": "anon-1", "messageId": "al-1"},
                     {"type": "track", "userId": "u-1", "event": "E", "messageId": "tr-1"}]
            status, _, _ = post(gateway.url + "/v1/batch", json.dumps({"batch": batch}).encode(),
                                {"Authorization": "Basic c2VnLWluOg==", "Content-Type": "application/json"})
            assert status == 200
            assert tranthor.wait_for_events(1)
            counters = wait_until(lambda: dest_stats(gateway)["counters"].get("delivered") == 1 and dest_stats(gateway)["counters"])
    assert [item["messageId"] for item in tranthor.events] == ["tr-1"]
    assert counters["skipped_alias_unsupported"] == 1


# ---- delivery errors ------------------------------------------------------------------


def test_401_pauses_delivery_until_restarted_with_the_right_key(tmp_path):
    """Needs the engine's "pause" verdict and /readyz's paused destinations."""
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        wrong = config(tranthor.url, write_key="d3Jvbmc6a2V5")
        with GatewayProcess(tmp_path, wrong) as gateway:
            items = tracks(3)
            assert send(gateway, items[:2]) == (204, b"")
            assert tranthor.wait_until(lambda: len(tranthor.attempts) >= 1)
            assert send(gateway, items[2:]) == (204, b"")  # ingest goes on while paused
            assert not tranthor.wait_until(lambda: len(tranthor.attempts) > 1, timeout=1.5)
            assert [a.status for a in tranthor.attempts] == [401]
            stats = dest_stats(gateway)
            assert stats["pending"] == 3 and stats["dead_letters"] == 0
            status, ready = get(gateway.url + "/readyz")
            paused = json.loads(ready)["paused_destinations"]  # still ready: ingest goes on
            assert status == 200 and "http_401" in paused["tranthor"] and "InvalidWriteKey" in paused["tranthor"]
        with GatewayProcess(tmp_path, config(tranthor.url)) as gateway:  # fixed, restarted
            assert tranthor.wait_for_events(3), gateway.log()
            wait_until(lambda: dest_stats(gateway)["pending"] == 0)
    assert sorted(item["messageId"] for item in tranthor.events) == sorted(item["messageId"] for item in items)


def test_400_dead_letters_the_batch_and_loses_nothing_else(tmp_path):
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        tranthor.fail_next(1, 400, body={"statusCode": 400, "error": "Bad Request", "message": "Unexpected token"})
        with GatewayProcess(tmp_path, config(tranthor.url)) as gateway:
            refused, later = tracks(3), tracks(2)
            assert send(gateway, refused) == (204, b"")
            wait_until(lambda: dest_stats(gateway)["dead_letters"] == 3)
            assert send(gateway, later) == (204, b"")
            assert tranthor.wait_for_events(2)
            listed = gateway.cli("dlq", "list", "--destination", "tranthor").stdout
            final = wait_until(lambda: dest_stats(gateway)["pending"] == 0 and dest_stats(gateway))
    assert all(item["messageId"] in listed for item in refused) and "http_400" in listed
    assert [item["messageId"] for item in tranthor.events] == [item["messageId"] for item in later]
    assert final["dead_letters"] == 3 and final["counters"]["delivered"] == 2
    assert len(tranthor.attempts) == 2  # a 400 is never retried


def test_400_naming_one_item_dead_letters_only_it(tmp_path):
    """Needs the engine's "resend" verdict."""
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        tranthor.fail_next(1, 400, body={"statusCode": 400, "code": "FST_ERR_VALIDATION", "error": "Bad Request",
                                         "message": "body/batch/1/timestamp must be string"})
        with GatewayProcess(tmp_path, config(tranthor.url)) as gateway:
            items = tracks(3)
            assert send(gateway, items) == (204, b"")
            assert tranthor.wait_for_events(2), gateway.log()
            final = wait_until(lambda: dest_stats(gateway)["pending"] == 0 and dest_stats(gateway))
            listed = gateway.cli("dlq", "list", "--destination", "tranthor").stdout
    assert [item["messageId"] for item in tranthor.events] == [items[0]["messageId"], items[2]["messageId"]]
    assert final["dead_letters"] == 1 and items[1]["messageId"] in listed


def test_413_splits_the_batch(tmp_path):
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        tranthor.fail_next(1, 413, body={"statusCode": 413, "code": "FST_ERR_CTP_BODY_TOO_LARGE",
                                         "error": "Payload Too Large", "message": "Request body is too large"})
        with GatewayProcess(tmp_path, config(tranthor.url)) as gateway:
            items = tracks(4)
            assert send(gateway, items) == (204, b"")
            assert tranthor.wait_for_events(4), gateway.log()
    assert [len(json.loads(a.raw)["batch"]) for a in tranthor.attempts] == [4, 2, 2]
    assert sorted(item["messageId"] for item in tranthor.events) == sorted(item["messageId"] for item in items)
    assert tranthor.duplicates == 0


def test_429_and_5xx_are_retried_until_delivered_without_duplicates(tmp_path):
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        tranthor.fail_next(1, 429, headers={"Retry-After": "1"}, body={"message": "slow down"})
        tranthor.fail_next(1, 500, body={"statusCode": 500, "error": "Internal Server Error", "message": "ClickHouse"})
        tranthor.fail_next(1, 503)
        cfg = config(tranthor.url)
        cfg["destinations"]["tranthor"]["retry"] = {**QUICK_RETRY, "max_attempts": 6}
        with GatewayProcess(tmp_path, cfg) as gateway:
            items = tracks(3)
            assert send(gateway, items) == (204, b"")
            assert tranthor.wait_for_events(3, timeout=20), gateway.log()
            final = wait_until(lambda: dest_stats(gateway)["counters"].get("delivered") == 3 and dest_stats(gateway))
    assert [a.status for a in tranthor.attempts] == [429, 500, 503, 204]
    assert sorted(item["messageId"] for item in tranthor.events) == sorted(item["messageId"] for item in items)
    assert tranthor.duplicates == 0 and final["dead_letters"] == 0
    assert final["counters"]["retried"] == 9


def test_a_lost_reply_is_retried_and_the_duplicates_counted(tmp_path):
    """Tranthor stored the batch but its reply was lost: the retry sends the same messageIds,
    which Dittofeed deduplicates when it reads; nothing is lost, the duplicates are counted."""
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        tranthor.accept_then_fail(1, 502)
        with GatewayProcess(tmp_path, config(tranthor.url)) as gateway:
            items = tracks(3)
            assert send(gateway, items) == (204, b"")
            assert tranthor.wait_for_events(6), gateway.log()
            final = wait_until(lambda: dest_stats(gateway)["counters"].get("delivered") == 3 and dest_stats(gateway))
    assert [a.status for a in tranthor.attempts] == [502, 204]
    assert tranthor.message_ids == {item["messageId"] for item in items}
    assert tranthor.duplicates == 3 and final["dead_letters"] == 0


def test_emulator_as_a_process_serves_stats(tmp_path):
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "tests.emulators.tranthor_api", "--port", "0", "--write-key", OUT_TOKEN],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        url = proc.stdout.readline().strip()
        item = tracks(1)
        status, _, _ = post(url + BATCH, json.dumps({"batch": item}).encode(),
                            {"authorization": f"Basic {OUT_TOKEN}", "Content-Type": "application/json"})
        assert status == 204
        status, body = get(url + "/stats")
        assert status == 200 and json.loads(body)["unique"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_the_emulator_refuses_like_dittofeed():
    """The emulator's own checks, which the delivery tests rely on."""
    with TranthorEmulator(write_key=OUT_TOKEN) as tranthor:
        auth = {"authorization": f"Bearer {OUT_TOKEN}", "Content-Type": "application/json"}
        url = tranthor.url + BATCH

        def call(body, headers=auth, path=BATCH):
            status, _, reply = post(tranthor.url + path, json.dumps(body).encode(), headers)
            return status, json.loads(reply) if reply else None

        assert call({"batch": tracks(2)}) == (204, None)
        assert call({"batch": tracks(1)}, {**auth, "authorization": "Basic other"}) == (401, {"message": "InvalidWriteKey"})
        assert call(tracks(1)[0], {**auth, "authorization": ""}, "/api/public/apps/track") == (
            401, {"message": "Invalid write key."})
        assert call({}, auth, "/api/public/apps/alias") == (400, {"message": "Not yet implemented."})
        status, reply = call({"batch": [*tracks(1), {"type": "track", "userId": "u", "event": "E"}]})
        assert status == 400 and reply["message"] == "body/batch/1 must have required property 'messageId'"
        status, reply = call({"batch": tracks(1)}, {**auth, "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415
        status, _, _ = post(url, b"x" * (6 * 1024 * 1024), auth)
        assert status == 413
    assert len(tranthor.events) == 2 and tranthor.duplicates == 0
