"""Delivery to the Amplitude destination from a Segment source, against a live Amplitude API
emulator: every Spec call translated, and each of Amplitude's answers handled per event (nothing
lost, nothing dead-lettered that should be retried, no batch resent whole for part of it)."""

import base64
import json

from segment.analytics.client import Client

from tests.emulators.amplitude_api import AmplitudeEmulator
from tests.gatewayproc import GatewayProcess, post, wait_until
from tests.test_segment_sdk import send_every_call

KEY = "segment-in-key"
OUT = "amplitude-out-key"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode(), "Content-Type": "application/json"}
QUICK_RETRY = {"max_attempts": 3, "max_age_s": 0, "backoff_base_s": 0.05, "backoff_max_s": 0.2}


def config(amplitude_url: str, **settings) -> dict:
    return {
        "sources": {"web": {"format": "segment", "keys": [KEY], "destinations": ["amplitude"]}},
        "destinations": {"amplitude": {
            "type": "amplitude",
            "settings": {"api_key": OUT, "base_url": amplitude_url, **settings},
            "batch": {"max_wait_ms": 100},
            "retry": QUICK_RETRY,
        }},
    }


def send(gateway, events: list[dict]) -> None:
    status, _, body = post(gateway.url + "/v1/batch", json.dumps({"batch": events}).encode(), AUTH)
    assert status == 200, body


def tracks(*users: str) -> list[dict]:
    return [{"type": "track", "event": f"E{i}", "userId": user, "messageId": f"m{i}"} for i, user in enumerate(users)]


def stats(gateway) -> dict:
    return json.loads(gateway.cli("stats", "--json").stdout)["destinations"]["amplitude"]


def settled(gateway) -> dict | None:
    current = stats(gateway)
    return current if current["pending"] == 0 else None


def attempt_ids(emulator) -> list[list[str]]:
    """The insert_ids of every request to the events endpoint, in order, whatever its answer."""
    return [[e["insert_id"] for e in json.loads(a.raw)["events"]] for a in emulator.attempts if a.path == "/2/httpapi"]


def dead_letters(gateway) -> str:
    return gateway.cli("dlq", "list", "--destination", "amplitude").stdout


def test_segment_sdk_calls_arrive_translated(tmp_path):
    with AmplitudeEmulator(api_key=OUT) as emulator:
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            client = Client(KEY, host=gateway.url, max_retries=0)
            sent = send_every_call(client)  # by messageId
            client.flush()
            client.join()
            assert emulator.wait_for_unique(6), gateway.log()
            assert emulator.wait_until(lambda: len(emulator.group_identifies) == 1)
            counters = wait_until(lambda: settled(gateway))["counters"]
    ids = {msg["type"]: message_id for message_id, msg in sent.items() if msg["type"] != "track"}
    tracks = {msg["event"]: msg for msg in sent.values() if msg["type"] == "track"}
    received = {event["insert_id"]: event for event in emulator.events}
    assert received[ids["identify"]]["event_type"] == "$identify"
    assert received[ids["identify"]]["user_properties"] == {"$set": {"email": "ada@example.com", "firstName": "Ada"}}
    order = received[tracks["Order Completed"]["messageId"]]
    assert (order["event_type"], order["revenue"], order["currency"]) == ("Order Completed", 42.5, "EUR")
    assert order["library"] == f"analytics-python/{tracks['Order Completed']['context']['library']['version']}"
    assert received[ids["page"]]["event_type"] == "Viewed Install Page"
    assert received[ids["screen"]]["event_type"] == "Viewed Welcome Screen"
    assert received[ids["group"]]["groups"] == {"company": "acme"}
    assert emulator.group_identifies == [{"group_type": "company", "group_value": "acme",
                                          "group_properties": {"$set": {"name": "Acme Inc", "plan": "enterprise"}}}]
    anonymous = received[tracks["Viewed Pricing"]["messageId"]]
    assert "user_id" not in anonymous and anonymous["device_id"] == "anon-9"
    assert ids["alias"] not in received and counters["skipped_alias_unsupported"] == 1
    assert counters["delivered"] == 6 and len(emulator.events) == 6


def test_a_400_dead_letters_only_the_named_events_and_resends_the_rest(tmp_path):
    with AmplitudeEmulator(api_key=OUT) as emulator:
        emulator.reject(["m1", "m3"], field="event_type")
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            send(gateway, tracks("user-a", "user-b", "user-c", "user-d"))
            final = wait_until(lambda: settled(gateway))
            letters = dead_letters(gateway)
    assert attempt_ids(emulator) == [["m0", "m1", "m2", "m3"], ["m0", "m2"]]  # the rest, at once, once
    assert sorted(e["insert_id"] for e in emulator.events) == ["m0", "m2"]
    assert final["counters"]["delivered"] == 2 and final["dead_letters"] == 2
    assert "m1" in letters and "m3" in letters and "amplitude_invalid_fields" in letters and "m0" not in letters


def test_an_invalid_api_key_dead_letters_the_batch(tmp_path):
    with AmplitudeEmulator(api_key="the-real-key") as emulator:
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            send(gateway, tracks("user-a", "user-b"))
            final = wait_until(lambda: settled(gateway))
            letters = dead_letters(gateway)
    assert len(emulator.attempts) == 1 and final["dead_letters"] == 2
    assert "amplitude_invalid_api_key" in letters


def test_413_halves_the_batch_until_it_fits(tmp_path):
    with AmplitudeEmulator(api_key=OUT, max_events=2) as emulator:
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            send(gateway, tracks("user-a", "user-b", "user-c", "user-d", "user-e"))
            final = wait_until(lambda: settled(gateway))
    assert [len(ids) for ids in attempt_ids(emulator)] == [5, 2, 3, 1, 2]
    assert [a.status for a in emulator.attempts] == [413, 200, 413, 200, 200]
    assert sorted(emulator.insert_ids) == [f"m{i}" for i in range(5)]
    assert final["dead_letters"] == 0


def test_429_delays_only_the_throttled_user_and_resends_the_others_at_once(tmp_path):
    with AmplitudeEmulator(api_key=OUT) as emulator:
        emulator.throttle(users=["user-hot"], times=2, retry_after="1")  # Amplitude says 30 s; 1 s here
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            send(gateway, tracks("user-a", "user-hot", "user-b", "user-hot"))
            final = wait_until(lambda: settled(gateway))
    attempts = attempt_ids(emulator)
    assert attempts[:2] == [["m0", "m1", "m2", "m3"], ["m0", "m2"]]  # the others went again at once
    assert all(ids == ["m1", "m3"] for ids in attempts[2:]) and len(attempts) == 4  # throttled twice, then through
    assert [a.status for a in emulator.attempts] == [429, 200, 429, 200]
    assert sorted(emulator.insert_ids) == ["m0", "m1", "m2", "m3"]
    assert final["dead_letters"] == 0 and final["counters"]["delivered"] == 4


def test_429_over_the_daily_quota_dead_letters_those_users_only(tmp_path):
    with AmplitudeEmulator(api_key=OUT) as emulator:
        emulator.throttle(users=["user-spam"], times=1, daily_quota=True)
        with GatewayProcess(tmp_path, config(emulator.url, endpoint="batch")) as gateway:
            send(gateway, tracks("user-a", "user-spam", "user-b"))
            final = wait_until(lambda: settled(gateway))
            letters = dead_letters(gateway)
    assert sorted(e["insert_id"] for e in emulator.events) == ["m0", "m2"]
    assert final["dead_letters"] == 1 and "amplitude_daily_quota" in letters and "m1" in letters


def test_server_errors_are_retried_and_nothing_is_lost(tmp_path):
    with AmplitudeEmulator(api_key=OUT) as emulator:
        emulator.fail_next_on("/2/httpapi", 2, status=503)
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            send(gateway, tracks("user-a", "user-b", "user-c"))
            final = wait_until(lambda: settled(gateway))
    assert [a.status for a in emulator.attempts] == [503, 503, 200]
    assert sorted(emulator.insert_ids) == ["m0", "m1", "m2"] and final["dead_letters"] == 0


def test_a_group_is_retried_when_its_groupidentify_fails(tmp_path):
    group = {"type": "group", "userId": "user-a", "groupId": "acme", "traits": {"name": "Acme"}, "messageId": "g1"}
    with AmplitudeEmulator(api_key=OUT) as emulator:
        emulator.fail_next_on("/groupidentify", 1, status=500)
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            send(gateway, [*tracks("user-b"), group])
            final = wait_until(lambda: settled(gateway))
    assert emulator.group_identifies == [{"group_type": "company", "group_value": "acme", "group_properties": {"$set": {"name": "Acme"}}}]
    assert sorted(emulator.insert_ids) == ["g1", "m0"]  # the $identify sent again is deduplicated by insert_id
    assert final["dead_letters"] == 0 and final["counters"]["delivered"] == 2


# ---- the emulator itself ---------------------------------------------------------------------


def test_the_emulator_applies_amplitudes_rules():
    with AmplitudeEmulator(api_key=OUT, max_events=3) as emulator:
        url = emulator.url + "/2/httpapi"

        def call(body):
            status, _, reply = post(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
            return status, json.loads(reply)

        good = {"event_type": "E", "user_id": "user-1", "insert_id": "i1"}
        assert call({"api_key": "wrong", "events": [good]}) == (400, {"code": 400, "error": "Invalid API key: wrong"})
        assert call({"events": [good]})[1]["missing_field"] == "api_key"
        assert call({"api_key": OUT, "events": [good] * 4}) == (413, {"code": 413, "error": "Payload too large"})
        status, body = call({"api_key": OUT, "events": [good, {"user_id": "user-1"}, {"event_type": "E", "user_id": "abc"}]})
        assert (status, body["events_with_missing_fields"], body["events_with_invalid_id_lengths"]) == (
            400, {"event_type": [1]}, {"user_id": [2]})
        status, body = call({"api_key": OUT, "options": {"min_id_length": 1}, "events": [good, {**good, "user_id": "u"}]})
        assert status == 200 and body["code"] == 200 and body["events_ingested"] == 2
        assert emulator.insert_ids == {"i1"} and len(emulator.events) == 2  # deduplicated on (device_id, insert_id)


def test_the_emulator_runs_as_a_count_only_process():
    import subprocess
    import sys
    import urllib.request

    from tests.gatewayproc import ROOT

    proc = subprocess.Popen([sys.executable, "-m", "tests.emulators.amplitude_api", "--api-key", OUT, "--count-only"],
                            cwd=ROOT, stdout=subprocess.PIPE)
    try:
        url = proc.stdout.readline().decode().strip()
        body = {"api_key": OUT, "events": [{"event_type": "E", "device_id": "device-1", "insert_id": f"i{i % 2}"} for i in range(3)]}
        status, _, reply = post(url + "/batch", json.dumps(body).encode())
        assert status == 200 and json.loads(reply)["code"] == 200
        with urllib.request.urlopen(url + "/stats", timeout=5) as response:
            counters = json.loads(response.read())
        assert (counters["events"], counters["unique"], counters["requests"]) == (3, 2, 1)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
