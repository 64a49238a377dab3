"""The official segment-analytics-python SDK against a live trackgate: every call type arrives,
translated, at a Segment API emulator, a webhook receiver and a file destination."""

import json

import pytest
from segment.analytics.client import Client

from tests.emulators.segment_api import SegmentEmulator
from tests.emulators.webhook_receiver import WebhookReceiver, verify_signature
from tests.gatewayproc import GatewayProcess, wait_until

IN_KEY = "sdk-write-key"
OUT_KEY = "segment-out-key"
SECRET = "hook-secret"


def config(segment_url: str, hook_url: str) -> dict:
    fast = {"max_wait_ms": 50}
    return {
        "sources": {"web": {"format": "segment", "keys": [IN_KEY], "destinations": ["segment", "hooks", "archive"]}},
        "destinations": {
            "segment": {"type": "segment", "settings": {"write_key": OUT_KEY, "base_url": segment_url}, "batch": fast},
            "hooks": {"type": "webhook", "settings": {"url": hook_url + "/in", "secret": SECRET}, "batch": fast},
            "archive": {"type": "file", "settings": {"path": "out/events.jsonl"}, "batch": fast},
        },
    }


def send_every_call(client: Client) -> dict[str, dict]:
    """Each Spec call once; returns what the SDK queued, by messageId."""
    sent = [
        client.identify("user-1", {"email": "ada@example.com", "firstName": "Ada"}),
        client.track("user-1", "Order Completed", {"revenue": 42.5, "currency": "EUR"}),
        client.page("user-1", "Docs", "Install", {"url": "https://example.com/docs/install"}),
        client.screen("user-1", "Onboarding", "Welcome", {"step": 1}),
        client.group("user-1", "acme", {"name": "Acme Inc", "plan": "enterprise"}),
        client.alias("anon-7", "user-1"),
        client.track(anonymous_id="anon-9", event="Viewed Pricing"),
    ]
    assert all(ok for ok, _ in sent)
    return {msg["messageId"]: msg for _, msg in sent}


@pytest.mark.parametrize("gzip", [False, True])
def test_every_call_arrives_translated_everywhere(tmp_path, gzip):
    with SegmentEmulator(write_key=OUT_KEY) as segment, WebhookReceiver(secret=SECRET) as hooks:
        with GatewayProcess(tmp_path, config(segment.url, hooks.url)) as gateway:
            errors = []
            client = Client(IN_KEY, host=gateway.url, gzip=gzip, max_retries=0, on_error=lambda e, b: errors.append(e))
            sent = send_every_call(client)
            client.flush()
            client.join()
            assert errors == []
            assert segment.wait_for_events(len(sent)), gateway.log()
            assert hooks.wait_for_events(len(sent)), gateway.log()
            out = tmp_path / "out" / "events.jsonl"
            lines = wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= len(sent) and out.read_text().splitlines())

    at_segment = {e["messageId"]: e for e in segment.events}
    at_hooks = {e["messageId"]: e for e in hooks.events}
    in_file = {e["messageId"]: e for e in map(json.loads, lines)}
    assert set(at_segment) == set(at_hooks) == set(in_file) == set(sent)
    assert len(segment.events) == len(hooks.events) == len(lines) == len(sent)  # no duplicates

    for message_id, original in sent.items():
        for delivered in (at_segment[message_id], at_hooks[message_id], in_file[message_id]):
            assert delivered["type"] == original["type"]
            assert delivered.get("userId") == original.get("userId")
            assert delivered.get("anonymousId") == original.get("anonymousId")
            for field in ("event", "name", "category", "groupId", "previousId", "properties", "traits"):
                assert delivered.get(field) == original.get(field), (field, delivered)
            assert delivered["originalTimestamp"].startswith(original["timestamp"][:19])
            assert delivered["timestamp"] and delivered["receivedAt"]
            assert delivered["context"]["library"]["name"] == "analytics-python"
        # trackgate's own bookkeeping goes to generic destinations, not to Segment
        assert at_hooks[message_id]["source"] == in_file[message_id]["source"] == "web"
        assert "source" not in at_segment[message_id]

    for headers, _ in segment.requests:
        assert headers["Authorization"] == SegmentEmulator(write_key=OUT_KEY)._auth.decode()
    raw_bodies = [a.raw for a in hooks.attempts if a.status == 200]
    assert raw_bodies and all(
        verify_signature(SECRET, a.raw, a.headers.get("X-Trackgate-Signature")) for a in hooks.attempts
    )


def test_a_resent_batch_is_delivered_once(tmp_path):
    """An SDK retry (same messageIds) after a lost 200 must not double-forward."""
    with SegmentEmulator(write_key=OUT_KEY) as segment, WebhookReceiver() as hooks:
        with GatewayProcess(tmp_path, config(segment.url, hooks.url)) as gateway:
            client = Client(IN_KEY, host=gateway.url, max_retries=0)
            ok, message = client.track("user-1", "Clicked")
            client.flush()
            resend = Client(IN_KEY, host=gateway.url, max_retries=0)
            resend.queue.put(message)  # the very same message, as a retry would send it
            resend.flush()
            assert segment.wait_for_events(1)
            stats = wait_until(lambda: settled(gateway))
    assert [e["messageId"] for e in segment.events] == [message["messageId"]]
    assert stats["destinations"]["segment"]["counters"]["delivered"] == 1


def settled(gateway) -> dict | None:
    """Store stats once nothing is pending anywhere, else None."""
    stats = json.loads(gateway.cli("stats", "--json").stdout)
    pending = sum(d["pending"] for d in stats["destinations"].values())
    return stats if pending == 0 else None
