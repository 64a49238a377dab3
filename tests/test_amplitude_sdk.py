"""The official amplitude-analytics SDK against a live trackgate: every call arrives at an
Amplitude API emulator exactly as the SDK sent it (Amplitude -> trackgate -> Amplitude) and at a
file destination in canonical form; the SDK reacts to trackgate's replies as to Amplitude's."""

import json
import threading

import pytest
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify, Revenue

from tests.emulators.amplitude_api import AmplitudeEmulator
from tests.gatewayproc import GatewayProcess, post, wait_until

IN_KEY = "amp-sdk-key"
OUT_KEY = "amp-project-key"


def config(amplitude_url: str, endpoint: str = "httpapi", limits: dict | None = None) -> dict:
    fast = {"max_wait_ms": 50}
    source = {"format": "amplitude", "keys": [IN_KEY], "destinations": ["amplitude", "archive"]}
    if limits:
        source["limits"] = limits
    return {
        "sources": {"app": source},
        "destinations": {
            "amplitude": {"type": "amplitude", "settings": {"api_key": OUT_KEY, "base_url": amplitude_url, "endpoint": endpoint}, "batch": fast},
            "archive": {"type": "file", "settings": {"path": "out/events.jsonl"}, "batch": fast},
        },
    }


class Callbacks:
    """The SDK's per-event callbacks: (event body as sent, code, message)."""

    def __init__(self):
        self.calls: list[tuple[dict, int, str]] = []
        self._lock = threading.Lock()

    def __call__(self, event, code, message=None):
        with self._lock:
            self.calls.append((event.get_event_body(), code, message))

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def by_code(self, code: int) -> list[dict]:
        with self._lock:
            return [body for body, got, _ in self.calls if got == code]


def client(gateway_url: str, callbacks: Callbacks, use_batch: bool = False, **options) -> Amplitude:
    path = "/batch" if use_batch else "/2/httpapi"
    settings = {"flush_interval_millis": 200, **options}
    return Amplitude(IN_KEY, Config(server_url=gateway_url + path, callback=callbacks, use_batch=use_batch, **settings))


def send_every_call(sdk: Amplitude) -> int:
    """Each kind of call once (with the fields the SDK can set); returns how many events."""
    who = EventOptions(user_id="user-123", device_id="device-abc")
    sdk.track(BaseEvent(
        "Song Played", user_id="user-123", device_id="device-abc", event_properties={"song": "x", "tags": ["a", "b"]},
        user_properties={"plan": "pro"}, groups={"company": "acme"}, app_version="2.1", platform="iOS", os_name="iOS",
        os_version="17", device_brand="Apple", device_manufacturer="Apple", device_model="iPhone", carrier="T",
        country="DE", region="BE", city="Berlin", dma="x", language="English", location_lat=52.5, location_lng=13.4,
        ip="192.0.2.10", idfa="IDFA", idfv="IDFV", adid="ADID", android_id="AID", event_id=7, session_id=1795433100000,
        price=1.5, quantity=2, revenue=3.0, product_id="sku-1", revenue_type="income", currency="EUR",
        partner_id="partner", user_agent="UA/1",
    ))
    identify = (Identify().set("email", "jane@example.com").set_once("first_seen", "2026-01-01").add("logins", 1)
                .append("tags", "a").prepend("badges", "z").unset("old").pre_insert("seen", 1)
                .post_insert("visits", 2).remove("roles", "guest"))
    sdk.identify(identify, who)
    sdk.group_identify("company", "acme", Identify().set("name", "Acme Inc").add("seats", 5))
    sdk.set_group("company", "acme", who)
    sdk.revenue(Revenue(price=9.99, quantity=2, product_id="sku-1", revenue_type="income"), who)
    sdk.track(BaseEvent("Anonymous Event", device_id="anon-45678", event_properties={"k": "v"}))
    return 6


@pytest.mark.parametrize("use_batch, endpoint", [(False, "httpapi"), (True, "batch")])
def test_every_call_arrives_as_sent_and_in_canonical_form(tmp_path, use_batch, endpoint):
    callbacks = Callbacks()
    with AmplitudeEmulator(api_key=OUT_KEY) as emulator:
        with GatewayProcess(tmp_path, config(emulator.url, endpoint)) as gateway:
            sdk = client(gateway.url, callbacks, use_batch)
            n = send_every_call(sdk)
            sdk.flush()
            wait_until(lambda: callbacks.count() >= n)
            assert emulator.wait_for_unique(n), gateway.log()
            out = tmp_path / "out" / "events.jsonl"
            lines = wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= n and out.read_text().splitlines())
            sdk.shutdown()

    sent = {body["insert_id"]: body for body in callbacks.by_code(200)}
    assert len(sent) == n
    received = {event["insert_id"]: event for event in emulator.events}
    assert received == sent  # every field the SDK sent, nothing more, nothing changed
    assert len(emulator.events) == n  # no duplicates
    paths = {path for path, _ in emulator.requests}
    assert paths == {"/batch" if use_batch else "/2/httpapi"}
    assert all(body["options"] == {"min_id_length": 1} for _, body in emulator.requests)

    canonical = {event["messageId"]: event for event in map(json.loads, lines)}
    assert set(canonical) == set(sent)
    by_type = sorted((e["type"], e.get("event", "")) for e in canonical.values())
    assert by_type == [("group", ""), ("identify", ""), ("identify", ""),
                       ("track", "Anonymous Event"), ("track", "Song Played"), ("track", "revenue_amount")]
    for message_id, event in canonical.items():
        original = sent[message_id]
        assert event["source"] == "app" and event["receivedAt"]
        assert event.get("userId") == original.get("user_id")
        assert event.get("anonymousId") == original.get("device_id")
        assert event["context"]["library"] == {"name": "amplitude-python", "version": "1.3.0"}
    identify = next(e for e in canonical.values() if e["type"] == "identify" and "email" in e["traits"])
    assert identify["traits"] == {"email": "jane@example.com", "first_seen": "2026-01-01"}
    kept = identify["integrations"]["Amplitude"]["user_properties"]
    assert set(kept) == {"$setOnce", "$add", "$append", "$prepend", "$unset", "$preInsert", "$postInsert", "$remove"}
    group = next(e for e in canonical.values() if e["type"] == "group")
    assert (group["groupId"], group["traits"]) == ("acme", {"name": "Acme Inc"}) and "userId" not in group
    song = next(e for e in canonical.values() if e.get("event") == "Song Played")
    assert song["context"]["ip"] == "192.0.2.10" and song["context"]["traits"] == {"plan": "pro"}
    assert song["context"]["os"] == {"name": "iOS", "version": "17"} and song["context"]["groupId"] == "acme"


def test_the_sdk_drops_only_the_events_trackgate_names_and_resends_the_rest(tmp_path):
    callbacks = Callbacks()
    with AmplitudeEmulator(api_key=OUT_KEY) as emulator:
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            sdk = client(gateway.url, callbacks)
            for i in range(5):
                user = "undefined" if i in (1, 3) else f"user-{i}"  # Amplitude refuses placeholder ids
                sdk.track(BaseEvent(f"Event {i}", user_id=user))
            sdk.flush()
            wait_until(lambda: callbacks.count() >= 5)
            assert emulator.wait_for_unique(3), gateway.log()
            sdk.shutdown()
            stats = json.loads(gateway.cli("stats", "--json").stdout)
    assert sorted(body["event_type"] for body in callbacks.by_code(400)) == ["Event 1", "Event 3"]
    assert sorted(body["event_type"] for body in callbacks.by_code(200)) == ["Event 0", "Event 2", "Event 4"]
    assert sorted(e["event_type"] for e in emulator.events) == ["Event 0", "Event 2", "Event 4"]
    assert stats["destinations"]["amplitude"]["counters"]["delivered"] == 3


def test_a_413_makes_the_sdk_halve_its_batch(tmp_path):
    """trackgate answers 413 past the source's max_events, as Amplitude does past 2,000."""
    callbacks = Callbacks()
    with AmplitudeEmulator(api_key=OUT_KEY) as emulator:
        with GatewayProcess(tmp_path, config(emulator.url, limits={"max_events": 3})) as gateway:
            sdk = client(gateway.url, callbacks, flush_queue_size=8)
            for i in range(5):
                sdk.track(BaseEvent(f"Event {i}", user_id="user-123"))
            sdk.flush()
            wait_until(lambda: callbacks.count() >= 5, timeout_s=30)
            assert emulator.wait_for_unique(5), gateway.log()
            sdk.shutdown()
    assert len(callbacks.by_code(200)) == 5
    assert sorted(e["event_type"] for e in emulator.events) == [f"Event {i}" for i in range(5)]


def test_an_unknown_api_key_gets_amplitudes_invalid_key_answer(tmp_path):
    body = {"api_key": "not-configured", "events": [{"event_type": "E", "user_id": "user-123"}]}
    with AmplitudeEmulator(api_key=OUT_KEY) as emulator:
        with GatewayProcess(tmp_path, config(emulator.url)) as gateway:
            status, _, reply = post(gateway.url + "/2/httpapi", json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert status == 400
    reply = json.loads(reply)
    assert reply["code"] == 400 and reply["error"].startswith("Invalid API key: ")  # the SDKs drop the batch
    assert emulator.attempts == []
