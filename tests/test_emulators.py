"""The vendor emulators: auth, recording, scripted failures, count-only mode, the three ways to run."""

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.emulators import SegmentEmulator, WebhookReceiver, basic_auth, sign

KEY = "k"
AUTH = {"Authorization": basic_auth(KEY)}
ROOT = Path(__file__).resolve().parent.parent


def post(url, body, headers=None):
    """POST with urllib; returns (status, headers, parsed-or-raw body) for any status."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, _parse(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, _parse(error.read())


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _parse(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def batch(*ids, type="track"):
    return {"batch": [{"type": type, "event": "E", "userId": "u", "messageId": i} for i in ids]}


def test_segment_records_an_authorised_batch():
    with SegmentEmulator(write_key=KEY) as emu:
        assert emu.url.startswith("http://127.0.0.1:")
        status, _, body = post(emu.url + "/v1/batch", batch("a", "b"), {**AUTH, "X-Test": "1"})
        assert (status, body) == (200, {"success": True})
        assert [e["messageId"] for e in emu.events] == ["a", "b"]
        headers, parsed = emu.requests[0]
        assert headers["x-test"] == "1" and parsed == batch("a", "b")
        assert emu.message_ids == {"a", "b"}
        assert get_json(emu.url + "/stats") == {"events": 2, "unique": 2, "requests": 1, "attempts": 1}


def test_segment_single_call_paths_imply_the_type():
    with SegmentEmulator(write_key=KEY) as emu:
        status, _, _ = post(emu.url + "/v1/identify", {"userId": "u", "messageId": "m"}, AUTH)
        assert status == 200
        assert emu.events == [{"type": "identify", "userId": "u", "messageId": "m"}]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": basic_auth("other")}, {"Authorization": "Basic " + "azp4"}, {"Authorization": "Bearer k"}],
)
def test_segment_refuses_a_wrong_key(headers):
    with SegmentEmulator(write_key=KEY) as emu:
        status, _, body = post(emu.url + "/v1/batch", batch("a"), headers)
        assert status == 401 and body["code"] == "invalid_write_key"
        assert emu.events == [] and [a.status for a in emu.attempts] == [401]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"batch": 3}', b'{"batch": [1]}'])
def test_segment_answers_400_to_invalid_bodies(raw):
    with SegmentEmulator(write_key=KEY) as emu:
        status, _, body = post(emu.url + "/v1/batch", raw, AUTH)
        assert status == 400 and body["code"] == "invalid_request"
        assert emu.events == []


def test_segment_refuses_a_body_over_500_kb():
    big = batch(*[f"id-{i}" for i in range(10)])
    big["batch"][0]["properties"] = {"pad": "x" * 600_000}
    with SegmentEmulator(write_key=KEY) as emu:
        status, _, body = post(emu.url + "/v1/batch", big, AUTH)
        assert (status, body["code"]) == (400, "payload_too_large")


@pytest.mark.parametrize("status", [400, 413, 429, 500, 503])
def test_fail_next_answers_the_script_then_recovers(status):
    with SegmentEmulator(write_key=KEY) as emu:
        emu.fail_next(2, status=status, headers={"Retry-After": "1"})
        answers = [post(emu.url + "/v1/batch", batch(str(i)), AUTH) for i in range(3)]
        assert [a[0] for a in answers] == [status, status, 200]
        assert answers[0][1]["Retry-After"] == "1"
        assert answers[0][2] == {"success": False, "code": f"http_{status}", "message": f"scripted {status}"}
        assert [e["messageId"] for e in emu.events] == ["2"]
        assert [a.status for a in emu.attempts] == [status, status, 200]


def test_fail_next_takes_a_custom_body_and_is_not_consumed_by_unauthorised_requests():
    with SegmentEmulator(write_key=KEY) as emu:
        emu.fail_next(1, status=400, body=b"nope")
        assert post(emu.url + "/v1/batch", batch("a"), {})[0] == 401
        status, _, body = post(emu.url + "/v1/batch", batch("a"), AUTH)
        assert (status, body) == (400, b"nope")
        assert post(emu.url + "/v1/batch", batch("b"), AUTH)[0] == 200
        assert emu.attempts[1].raw == json.dumps(batch("a")).encode()
        assert emu.attempts[1].status == 400


def test_always_until_reset():
    with SegmentEmulator(write_key=KEY) as emu:
        emu.always(503, body={"message": "down"})
        answers = [post(emu.url + "/v1/batch", batch("a"), AUTH) for _ in range(3)]
        assert [(status, body) for status, _, body in answers] == [(503, {"message": "down"})] * 3
        emu.reset()
        assert post(emu.url + "/v1/batch", batch("a"), AUTH)[0] == 200
        assert len(emu.events) == 1 and len(emu.attempts) == 4
        emu.clear()
        assert emu.events == [] and emu.attempts == [] and emu.event_count == 0


def test_set_delay_slows_every_answer():
    with SegmentEmulator(write_key=KEY) as emu:
        emu.set_delay(0.2)
        started = time.monotonic()
        assert post(emu.url + "/v1/batch", batch("a"), AUTH)[0] == 200
        assert time.monotonic() - started >= 0.2


def test_count_only_mode_counts_without_keeping():
    with SegmentEmulator(write_key=KEY, count_only=True) as emu:
        for ids in (("a", "b"), ("b", "c")):
            assert post(emu.url + "/v1/batch", batch(*ids), AUTH)[0] == 200
        assert emu.events == [] and emu.requests == [] and emu.attempts == []
        assert get_json(emu.url + "/stats") == {"events": 4, "unique": 3, "requests": 2, "attempts": 2}
        assert post(emu.url + "/v1/batch", b"{oops", AUTH)[0] == 400


def test_wait_for_events_sees_requests_from_another_thread():
    with SegmentEmulator(write_key=KEY) as emu:
        assert not emu.wait_for_events(1, timeout=0.05)
        post(emu.url + "/v1/batch", batch("a"), AUTH)
        assert emu.wait_for_events(1, timeout=1)


def test_the_server_stops_on_exit():
    with SegmentEmulator(write_key=KEY) as emu:
        url = emu.url
    with pytest.raises(urllib.error.URLError):
        post(url + "/v1/batch", batch("a"), AUTH)


def test_async_use_on_the_callers_loop():
    async def run():
        async with SegmentEmulator(write_key=KEY) as emu, aiohttp.ClientSession() as session:
            emu.fail_next(1, status=429, headers={"Retry-After": "1"})
            async with session.post(emu.url + "/v1/batch", json=batch("a"), headers=AUTH) as response:
                assert (response.status, response.headers["Retry-After"]) == (429, "1")
            async with session.post(emu.url + "/v1/batch", json=batch("a"), headers=AUTH) as response:
                assert response.status == 200 and await response.json() == {"success": True}
            return emu.event_count

    assert asyncio.run(run()) == 1


def test_runs_as_a_process_and_serves_stats():
    command = [sys.executable, "-m", "tests.emulators.segment_api", "--port", "0", "--write-key", KEY, "--count-only"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert post(url + "/v1/batch", batch("a", "b", "c"), AUTH)[0] == 200
        assert get_json(url + "/stats")["events"] == 3
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_webhook_records_signed_posts_on_any_path():
    with WebhookReceiver(secret="s3cret") as hook:
        body = json.dumps({"batch": [{"messageId": "a"}, {"messageId": "b"}]}).encode()
        status, _, answer = post(hook.url + "/events", body, {"X-Trackgate-Signature": sign("s3cret", body)})
        assert (status, answer) == (200, {"ok": True})
        headers, parsed = hook.requests[0]
        assert headers["x-trackgate-signature"].startswith("sha256=") and len(hook.events) == 2
        assert hook.attempts[0].path == "/events" and hook.attempts[0].raw == body


@pytest.mark.parametrize("signature", [None, "sha256=00", sign("other", b"[]"), sign("s3cret", b"[]").upper()])
def test_webhook_refuses_a_bad_signature(signature):
    headers = {} if signature is None else {"X-Trackgate-Signature": signature}
    with WebhookReceiver(secret="s3cret") as hook:
        status, _, answer = post(hook.url + "/", b"[]", headers)
        assert (status, answer) == (401, {"error": "bad_signature"})
        assert hook.requests == [] and hook.bad_signatures == 1


def test_webhook_scripting_and_unsigned_mode():
    with WebhookReceiver(status=204) as hook:
        hook.fail_next(1, status=503, headers={"Retry-After": "2"})
        first = post(hook.url + "/x", [{"messageId": "a"}])
        assert (first[0], first[1]["Retry-After"]) == (503, "2")
        assert post(hook.url + "/x", b"plain text")[0] == 204
        assert hook.requests[0][1] == b"plain text" and hook.events == []
        assert get_json(hook.url + "/stats") == {"events": 0, "requests": 1, "attempts": 2, "bad_signatures": 0}
