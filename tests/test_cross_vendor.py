"""Cross-vendor, end to end: a ThriveStack-dialect client -> trackgate -> the Segment, Amplitude
and Tranthor APIs (emulators), every field where vendor-apis.md (sections 2-6) puts it; and the
same messageId reaches all three, so each vendor can dedupe what trackgate redelivers.
Also the official Dittofeed Node SDK -> trackgate -> ThriveStack and Tranthor. (A Segment SDK ->
ThriveStack is in test_thrivestack_e2e.py.)"""

import json
from datetime import datetime

from tests.emulators.amplitude_api import AmplitudeEmulator
from tests.emulators.segment_api import SegmentEmulator
from tests.emulators.thrivestack_api import ThriveStackEmulator
from tests.emulators.tranthor_api import TranthorEmulator
from tests.gatewayproc import GatewayProcess, post, wait_until
from tests.test_tranthor_e2e import IN_TOKEN, run_sdk

TS_KEY = "ts-in-key"
CONTEXT = {"group_id": "acc-1", "device_id": "dev-1", "session_id": "session_abc", "source": "product"}
IDENTIFY = {
    "user_id": "u-100",
    "traits": {"user_email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
               "created_at": "2024-01-15T10:30:00Z", "plan": "pro"},
    "context": CONTEXT,
    "timestamp": "2026-11-23T10:00:00Z",
}
GROUP = {
    "group_id": "acc-1",
    "user_id": "u-100",
    "traits": {"account_name": "Acme", "account_domain": "acme.com", "group_type": "Account", "employees": 50},
    "context": {"group_id": "acc-1"},
    "timestamp": "2026-11-23T10:00:01Z",
}
SIGNED_UP = {
    "event_name": "signed_up",
    "user_id": "u-100",
    "properties": {"utm_source": "google", "utm_campaign": "launch", "plan": "pro"},
    "context": CONTEXT,
    "timestamp": "2026-11-23T10:00:02Z",
}
PAGE_VISIT = {
    "event_name": "page_visit",
    "user_id": "u-100",
    "properties": {"page_url": "https://acme.com/pricing", "page_path": "/pricing", "page_title": "Pricing",
                   "page_referrer": "https://google.com/"},
    "context": CONTEXT,
    "timestamp": "2026-11-23T10:00:03Z",
}


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def config(segment: str, amplitude: str, tranthor: str) -> dict:
    quick = {"max_wait_ms": 20}
    destinations = {
        "segment": {"type": "segment", "settings": {"write_key": "seg-out", "base_url": segment}, "batch": quick},
        "amplitude": {"type": "amplitude", "settings": {"api_key": "amp-out", "base_url": amplitude}, "batch": quick},
        "tranthor": {"type": "tranthor", "settings": {"write_key": "trn-out", "base_url": tranthor}, "batch": quick},
    }
    source = {"format": "thrivestack", "keys": [TS_KEY], "destinations": list(destinations)}
    return {"sources": {"product": source}, "destinations": destinations}


def test_a_thrivestack_client_reaches_segment_amplitude_and_tranthor(tmp_path):
    with (
        SegmentEmulator(write_key="seg-out") as segment,
        AmplitudeEmulator(api_key="amp-out") as amplitude,
        TranthorEmulator(write_key="trn-out") as tranthor,
    ):
        with GatewayProcess(tmp_path, config(segment.url, amplitude.url, tranthor.url)) as gateway:
            headers = {"x-api-key": TS_KEY, "content-type": "application/json"}
            for path, items in (("/api/identify", [IDENTIFY]), ("/api/group", [GROUP]),
                                ("/api/track", [SIGNED_UP, PAGE_VISIT])):
                status, _, body = post(gateway.url + path, json.dumps(items).encode(), headers)
                assert status == 200 and json.loads(body)["success"] is True
            assert segment.wait_for_events(4), gateway.log()
            assert tranthor.wait_for_events(4), gateway.log()
            # identify, group's $identify, signed_up, the page; plus the group's traits
            assert amplitude.wait_for_events(4) and amplitude.wait_until(lambda: amplitude.group_identifies), gateway.log()

    seg = {e["type"]: e for e in segment.events}
    trn = {e["type"]: e for e in tranthor.events}
    amp = {e["event_type"]: e for e in amplitude.events if "groups" not in e}
    ids = {kind: seg[kind]["messageId"] for kind in ("identify", "group", "track", "page")}

    # Segment (section 4.2): reserved names renamed, context extensions kept, page_visit a page.
    assert seg["identify"]["userId"] == "u-100"
    assert seg["identify"]["traits"] == {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace",
                                         "createdAt": "2024-01-15T10:30:00Z", "plan": "pro"}
    context = seg["identify"]["context"]
    assert (context["groupId"], context["device"]["id"], context["sessionId"], context["source"]) == (
        "acc-1", "dev-1", "session_abc", "product")
    assert seg["group"]["groupId"] == "acc-1" and seg["group"]["traits"]["name"] == "Acme"
    assert seg["group"]["traits"]["account_domain"] == "acme.com"  # no Spec field for a bare domain
    assert seg["track"]["event"] == "signed_up" and seg["track"]["properties"]["utm_source"] == "google"
    assert seg["track"]["context"]["campaign"] == {"source": "google", "name": "launch"}
    assert seg["page"]["properties"] == {"url": "https://acme.com/pricing", "path": "/pricing", "title": "Pricing",
                                         "referrer": "https://google.com/"}
    assert seg["track"]["timestamp"].startswith("2026-11-23T10:00:02")

    # Amplitude (section 3.2 out): $identify with $set, events with insert_id = messageId, ms times.
    identify = amp["$identify"]
    assert identify["user_id"] == "u-100" and identify["device_id"] == "dev-1"
    assert identify["user_properties"]["$set"]["email"] == "ada@example.com"
    assert identify["insert_id"] == ids["identify"] and identify["time"] == _ms(IDENTIFY["timestamp"])
    signed_up = amp["signed_up"]
    assert signed_up["insert_id"] == ids["track"] and signed_up["time"] == _ms(SIGNED_UP["timestamp"])
    assert signed_up["event_properties"]["utm_source"] == "google"
    # ThriveStack's context extensions ride in the properties: Amplitude has no field for them.
    assert {k: signed_up["event_properties"].get(k) for k in ("sessionId", "source", "groupId")} == {
        "sessionId": "session_abc", "source": "product", "groupId": "acc-1"}
    page = amp["Loaded a Page"]
    assert page["insert_id"] == ids["page"] and page["event_properties"]["url"] == "https://acme.com/pricing"
    (group_identify,) = [e for e in amplitude.events if "groups" in e]
    assert group_identify["groups"] == {"company": "acc-1"} and group_identify["insert_id"] == ids["group"]
    (traits,) = amplitude.group_identifies
    assert traits["group_value"] == "acc-1" and traits["group_properties"]["$set"]["name"] == "Acme"

    # Tranthor (section 5.2): nearly 1:1, messageId kept, ISO timestamps.
    assert {kind: trn[kind]["messageId"] for kind in ids} == ids
    assert trn["identify"]["traits"]["firstName"] == "Ada" and trn["identify"]["userId"] == "u-100"
    assert trn["group"]["groupId"] == "acc-1" and trn["track"]["event"] == "signed_up"
    assert trn["page"]["properties"]["path"] == "/pricing"
    assert trn["track"]["timestamp"] == "2026-11-23T10:00:02.000Z"
    assert trn["track"]["context"]["sessionId"] == "session_abc"  # Dittofeed keeps context free-form


DITTOFEED_CALLS = [
    {"method": "identify", "params": {"userId": "user-1", "traits": {"email": "ada@example.com", "firstName": "Ada"},
                                      "timestamp": "2026-11-23T11:00:00.000Z"}},
    {"method": "track", "params": {"userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"},
                                   "timestamp": "2026-11-23T11:00:01.000Z"}},
    {"method": "page", "params": {"userId": "user-1", "name": "Pricing",
                                  "properties": {"url": "https://example.com/pricing", "path": "/pricing"},
                                  "timestamp": "2026-11-23T11:00:02.000Z"}},
    {"method": "screen", "params": {"userId": "user-1", "name": "Welcome", "timestamp": "2026-11-23T11:00:03.000Z"}},
    {"method": "track", "params": {"anonymousId": "anon-9", "event": "Viewed Pricing"}},  # no user: not for ThriveStack
]


def test_the_dittofeed_node_sdk_reaches_thrivestack_and_tranthor(tmp_path, node_sdk):
    quick = {"max_wait_ms": 20}
    destinations = {
        "thrivestack": {"type": "thrivestack", "settings": {"api_key": "ts-out", "base_url": None}, "batch": quick},
        "tranthor": {"type": "tranthor", "settings": {"write_key": "trn-out", "base_url": None}, "batch": quick},
    }
    with ThriveStackEmulator(api_key="ts-out") as thrivestack, TranthorEmulator(write_key="trn-out") as tranthor:
        destinations["thrivestack"]["settings"]["base_url"] = thrivestack.url + "/api"
        destinations["tranthor"]["settings"]["base_url"] = tranthor.url
        source = {"format": "tranthor", "keys": [IN_TOKEN], "destinations": list(destinations)}
        cfg = {"sources": {"app": source}, "destinations": destinations}
        with GatewayProcess(tmp_path, cfg) as gateway:
            result = run_sdk(node_sdk, gateway.url, DITTOFEED_CALLS)
            assert all(flush["ok"] for flush in result["flushes"]), result
            assert tranthor.wait_for_events(len(DITTOFEED_CALLS)), gateway.log()
            assert thrivestack.wait_for_items(len(DITTOFEED_CALLS) - 1), gateway.log()
            stats = wait_until(lambda: json.loads(gateway.cli("stats", "--json").stdout)["destinations"]["thrivestack"])
            skipped = stats["counters"].get("skipped_missing_user_id")

    assert skipped == 1  # the anonymous track: ThriveStack requires a user_id, so it is counted, not sent
    (identify,) = thrivestack.items["identify"]
    assert identify["user_id"] == "user-1" and identify["timestamp"] == "2026-11-23T11:00:00.000Z"
    assert identify["traits"] == {"user_email": "ada@example.com", "first_name": "Ada"}  # reserved names back
    tracks = {item["event_name"]: item for item in thrivestack.items["track"]}
    assert set(tracks) == {"signed_up", "page_visit", "screen_viewed"}  # B2B names snake_cased; page -> page_visit
    assert tracks["signed_up"]["properties"] == {"plan": "pro"}
    assert tracks["page_visit"]["properties"]["page_url"] == "https://example.com/pricing"
    assert tracks["page_visit"]["properties"]["page_path"] == "/pricing"
    assert all(item["user_id"] == "user-1" for item in tracks.values())
    # the same events, messageIds kept, at Tranthor
    assert {item["event"] for item in tranthor.events if item["type"] == "track"} == {"Signed Up", "Viewed Pricing"}
