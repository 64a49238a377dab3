"""Delivery against real emulators: retry, Retry-After, give-up to the dead-letter queue,
replay, 413 split, enabled/paused, integrations flags, isolation, graceful shutdown."""

import base64
import json
import time
import uuid

from tests.emulators.segment_api import SegmentEmulator
from tests.emulators.webhook_receiver import WebhookReceiver
from tests.gatewayproc import GatewayProcess, post, wait_until

KEY = "delivery-key"
OUT = "segment-out"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
QUICK_RETRY = {"max_attempts": 3, "max_age_s": 0, "backoff_base_s": 0.05, "backoff_max_s": 0.2}


def gateway_config(segment_url, hook_url=None, segment=None, hooks=None, routes=("segment",)) -> dict:
    destinations = {
        "segment": {
            "type": "segment",
            "settings": {"write_key": OUT, "base_url": segment_url},
            "batch": {"max_wait_ms": 20},
            "retry": QUICK_RETRY,
            **(segment or {}),
        }
    }
    if hook_url:
        destinations["hooks"] = {
            "type": "webhook",
            "settings": {"url": hook_url + "/in"},
            "batch": {"max_wait_ms": 20},
            "retry": QUICK_RETRY,
            **(hooks or {}),
        }
    return {"sources": {"web": {"format": "segment", "keys": [KEY], "destinations": list(routes)}}, "destinations": destinations}


def send(gateway, n=1, **fields) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    batch = [{"type": "track", "userId": "u1", "event": "Clicked", "messageId": i, **fields} for i in ids]
    status, _, body = post(gateway.url + "/v1/batch", json.dumps({"batch": batch}).encode(), AUTH)
    assert status == 200, body
    return ids


def stats(gateway) -> dict:
    return json.loads(gateway.cli("stats", "--json").stdout)


def dest_stats(gateway, name) -> dict:
    return stats(gateway)["destinations"].get(name, {"pending": 0, "counters": {}, "dead_letters": 0})


def test_server_errors_are_retried_until_delivered(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment:
        segment.fail_next(2, status=500)
        with GatewayProcess(tmp_path, gateway_config(segment.url)) as gw:
            ids = send(gw, 3)
            assert segment.wait_for_events(3)
            assert [a.status for a in segment.attempts][:3] == [500, 500, 200]
            counters = wait_until(lambda: dest_stats(gw, "segment")["counters"].get("delivered") == 3 and dest_stats(gw, "segment"))
    assert sorted(e["messageId"] for e in segment.events) == sorted(ids)
    assert counters["counters"]["retried"] == 6 and counters["dead_letters"] == 0


def test_retry_after_is_honoured(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment:
        segment.fail_next(1, status=429, headers={"Retry-After": "2"})
        with GatewayProcess(tmp_path, gateway_config(segment.url)) as gw:
            send(gw)
            assert segment.wait_until(lambda: len(segment.attempts) == 1)
            first = time.monotonic()
            assert not segment.wait_until(lambda: len(segment.attempts) > 1, timeout=1.5)
            assert segment.wait_for_events(1, timeout=10)
            assert time.monotonic() - first >= 1.5


def test_gives_up_into_the_dead_letter_queue_then_replays(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment:
        segment.always(503, body={"message": "down for maintenance"})
        with GatewayProcess(tmp_path, gateway_config(segment.url)) as gw:
            ids = send(gw, 2)
            wait_until(lambda: dest_stats(gw, "segment")["dead_letters"] == 2)
            assert len(segment.attempts) == 3  # max_attempts, one request each time

            listed = gw.cli("dlq", "list", "--destination", "segment")
            assert listed.returncode == 0 and all(i in listed.stdout for i in ids) and "http_503" in listed.stdout
            letter_id = listed.stdout.splitlines()[1].split()[0]
            shown = gw.cli("dlq", "show", letter_id)
            assert "HTTP 503" in shown.stdout and "down for maintenance" in shown.stdout
            assert "gave up after 3 attempts" in shown.stdout and "/v1/batch" in shown.stdout

            segment.reset()
            replayed = gw.cli("dlq", "replay", "segment")
            assert replayed.returncode == 0 and "replayed 2" in replayed.stdout
            assert segment.wait_for_events(2)
            wait_until(lambda: dest_stats(gw, "segment")["dead_letters"] == 0)
    assert sorted(e["messageId"] for e in segment.events) == sorted(ids)


def test_permanent_errors_dead_letter_at_once_and_purge(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment:
        segment.fail_next(1, status=400, body={"code": "invalid_request", "message": "bad"})
        with GatewayProcess(tmp_path, gateway_config(segment.url)) as gw:
            send(gw)
            wait_until(lambda: dest_stats(gw, "segment")["dead_letters"] == 1)
            assert len(segment.attempts) == 1
            assert "http_400" in gw.cli("dlq", "list").stdout
            assert "purged 1" in gw.cli("dlq", "purge", "segment", "--reason", "http_400").stdout
            assert dest_stats(gw, "segment")["dead_letters"] == 0


def test_413_halves_the_batch(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment:
        segment.fail_next(1, status=413)
        with GatewayProcess(tmp_path, gateway_config(segment.url)) as gw:
            ids = send(gw, 4)
            assert segment.wait_for_events(4)
    sizes = [len(json.loads(a.raw)["batch"]) for a in segment.attempts]
    assert sizes == [4, 2, 2]
    assert sorted(e["messageId"] for e in segment.events) == sorted(ids)


def test_disabled_paused_and_integrations_flags(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment, WebhookReceiver() as hooks:
        config = gateway_config(segment.url, hooks.url, routes=("segment", "hooks"), hooks={"paused": True})
        with GatewayProcess(tmp_path, config) as gw:
            send(gw, 2)
            send(gw, 1, integrations={"All": False, "hooks": True})
            assert segment.wait_for_events(2)
            hook_stats = wait_until(lambda: dest_stats(gw, "hooks")["pending"] == 3 and dest_stats(gw, "hooks"))
            assert hooks.attempts == []  # paused: queued, not sent
            seg = dest_stats(gw, "segment")
            assert seg["counters"]["skipped_integrations"] == 1
            assert hook_stats["pending"] == 3
        assert len(segment.events) == 2

        config["destinations"]["hooks"]["paused"] = False
        config["destinations"]["segment"]["enabled"] = False
        with GatewayProcess(tmp_path, config) as gw:
            assert hooks.wait_for_events(3)  # resumed after the restart
            send(gw, 1)
            assert hooks.wait_for_events(4)
            assert dest_stats(gw, "segment")["counters"]["skipped_disabled"] == 1
        assert len(segment.events) == 2


def test_a_slow_destination_does_not_hold_up_another(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment, WebhookReceiver() as hooks:
        hooks.set_delay(5)
        config = gateway_config(segment.url, hooks.url, routes=("segment", "hooks"), hooks={"timeout_s": 30})
        with GatewayProcess(tmp_path, config) as gw:
            for _ in range(3):
                send(gw, 10)
                assert segment.wait_for_events(len(segment.events) + 1, timeout=2)
            assert segment.wait_for_events(30, timeout=2)
            assert hooks.events == []
            hooks.reset()


def test_sigterm_finishes_requests_in_flight_and_keeps_the_rest(tmp_path):
    with SegmentEmulator(write_key=OUT) as segment:
        segment.set_delay(1.5)
        gw = GatewayProcess(tmp_path, gateway_config(segment.url, segment={"batch": {"max_events": 5, "max_wait_ms": 0, "max_in_flight": 1}}))
        with gw:
            ids = send(gw, 20)
            time.sleep(0.5)  # the first batch of 5 is now in flight at the slow destination
            assert gw.terminate() in (0, -15)  # uvicorn re-raises SIGTERM once shut down
            assert '"msg":"trackgate stopped"' in gw.log()
        delivered_before = {e["messageId"] for e in segment.events}
        assert len(delivered_before) == 5  # the in-flight batch finished; nothing more was started
        segment.reset()
        with gw:
            assert segment.wait_for_events(20)
    assert sorted(e["messageId"] for e in segment.events) == sorted(ids)
