"""The engine's handling of per-event verdicts, in-process against a real SQLite store:
partial failures resend only the innocent events, throttled events wait alone, a refused
credential pauses the destination without losing or dead-lettering anything, an event sent
in two requests keeps its worst outcome, and retries that may duplicate are counted."""

import asyncio
import json
import time
import types
from pathlib import Path

import msgspec

from gateway.adapter import BatchLimits, OutboundRequest, Response, Verdict
from gateway.config import DestinationConfig, RetryConfig
from gateway.delivery import Worker
from gateway.event import Track, encode_event
from gateway.metrics import Metrics
from gateway.store.base import DeadLetterFilter
from tests.appends import append
from gateway.store.sqlite import SqliteStore


class ScriptedVendor:
    """A transport whose answers are scripted per request: each answer is a status and a
    JSON body `{"dead": [ids], "throttled": [ids], "pause": bool}` the adapter reads."""

    def __init__(self, *answers: tuple[int, dict]):
        self.answers = list(answers)
        self.sent: list[list[str]] = []  # message ids of each request, in order
        self.urls: list[str] = []

    async def send(self, request, timeout_s):
        self.sent.append(json.loads(request.body))
        self.urls.append(request.url)
        status, body = self.answers.pop(0) if self.answers else (200, {})
        return Response(status, {}, json.dumps(body).encode())


def vendor_adapter(dedupes: bool = True, default_retry: dict | None = None, two_requests: bool = False):
    """An adapter that names events by messageId, as Amplitude's 400 and 429 do."""

    def build_requests(events, settings):
        ids = [e.message_id for e in events]
        requests = [OutboundRequest("http://vendor/events", json.dumps(ids).encode(), tuple(range(len(events))))]
        if two_requests:  # every event also goes to a second endpoint, like Amplitude's groups
            requests.append(OutboundRequest("http://vendor/groups", json.dumps(ids).encode(), tuple(range(len(events)))))
        return requests

    def classify(request, response):
        ids = json.loads(request.body)
        body = json.loads(response.body or b"{}")
        if response.status == 401:
            return [Verdict("pause", "http_401", detail="invalid key")] * len(ids)
        if response.status >= 500:
            return [Verdict("retry", f"http_{response.status}")] * len(ids)
        verdicts = []
        for message_id in ids:
            if message_id in body.get("dead", ()):
                verdicts.append(Verdict("dead", "named_bad"))
            elif message_id in body.get("throttled", ()):
                verdicts.append(Verdict("retry", "throttled", retry_after_s=30.0, hold_destination=False))
            elif response.status != 200:
                verdicts.append(Verdict("resend", f"http_{response.status}"))
            else:
                verdicts.append(Verdict("delivered"))
        return verdicts

    module = types.SimpleNamespace(
        batch_limits=lambda settings: BatchLimits(100, 1_000_000),
        build_requests=build_requests,
        classify=classify,
        DEDUPES=dedupes,
    )
    if default_retry is not None:
        module.DEFAULT_RETRY = default_retry
    return module


def run_round(tmp_path: Path, module, vendor: ScriptedVendor, n: int = 4, spec: DestinationConfig | None = None):
    """Append n events, deliver one round, settle; return the worker, the dead letters,
    the pending chunks' due times and the store's counters for the destination."""

    async def scenario():
        store = SqliteStore(str(tmp_path / "t.db"))
        await store.open()
        try:
            events = [Track(message_id=f"m{i}", user_id=f"u{i}", event="e") for i in range(n)]
            await append(store, [(e.message_id, encode_event(e), ("d",)) for e in events])
            worker = Worker("d", spec or DestinationConfig(type="x"), module, None, store, vendor, Metrics())
            await worker._deliver(await store.lease("d", 100))
            await asyncio.gather(*worker._settling)
            letters = await store.dead_letters("d", DeadLetterFilter())
            stats = (await store.stats()).destinations["d"]
            return worker, letters, stats
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_a_partial_400_dead_letters_the_named_events_and_resends_the_rest_at_once(tmp_path):
    vendor = ScriptedVendor((400, {"dead": ["m1"]}))
    worker, letters, stats = run_round(tmp_path, vendor_adapter(), vendor)
    assert [letter.message_id for letter in letters] == ["m1"]
    assert vendor.sent == [["m0", "m1", "m2", "m3"], ["m0", "m2", "m3"]]  # not the whole batch again
    assert stats.pending == 0 and stats.counters["delivered"] == 3


def test_throttled_events_wait_alone_and_do_not_hold_the_destination(tmp_path):
    vendor = ScriptedVendor((429, {"throttled": ["m2"]}))
    worker, letters, stats = run_round(tmp_path, vendor_adapter(), vendor)
    assert letters == []
    assert vendor.sent == [["m0", "m1", "m2", "m3"], ["m0", "m1", "m3"]]
    assert stats.pending == 1 and stats.counters["delivered"] == 3


def test_a_round_of_only_throttled_events_does_not_hold_back_other_users(tmp_path):
    vendor = ScriptedVendor((429, {"throttled": ["m0", "m1"]}))
    worker, letters, stats = run_round(tmp_path, vendor_adapter(), vendor, n=2)
    assert stats.pending == 2 and letters == []
    assert worker._hold_until < time.time()  # fresh events of other users go at once


def test_an_all_resend_answer_is_a_plain_retry_not_a_loop(tmp_path):
    vendor = ScriptedVendor(*[(400, {})] * 20)
    worker, letters, stats = run_round(tmp_path, vendor_adapter(), vendor)
    assert len(vendor.sent) == 1  # nothing named: no immediate resend
    assert stats.pending == 4 and stats.counters["retried"] == 4 and letters == []


def test_a_refused_credential_pauses_the_destination_and_keeps_every_event(tmp_path):
    vendor = ScriptedVendor((401, {}))
    spec = DestinationConfig(type="x", retry=RetryConfig(max_attempts=1, max_age_s=0))
    worker, letters, stats = run_round(tmp_path, vendor_adapter(), vendor, spec=spec)
    assert letters == []  # not dead-lettered even with no retry budget left
    assert stats.pending == 4
    assert worker.paused == "http_401: invalid key"

    async def gather_while_paused():
        return await worker._gather()

    assert asyncio.run(gather_while_paused()) == []  # leases nothing while paused
    assert len(vendor.sent) == 1


def test_an_event_in_two_requests_keeps_its_worst_verdict(tmp_path):
    # The first endpoint takes everything; the second names m3 as bad.
    vendor = ScriptedVendor((200, {}), (400, {"dead": ["m3"]}))
    worker, letters, stats = run_round(tmp_path, vendor_adapter(two_requests=True), vendor)
    assert [letter.message_id for letter in letters] == ["m3"]
    assert stats.counters["delivered"] == 3


def test_retries_that_may_duplicate_are_counted_where_the_vendor_cannot_dedupe(tmp_path):
    vendor = ScriptedVendor((500, {}))
    _, _, stats = run_round(tmp_path / "a", vendor_adapter(dedupes=False), vendor)
    assert stats.counters["possible_duplicates"] == 4

    vendor = ScriptedVendor((503, {}))  # 503 promises nothing was processed
    _, _, stats = run_round(tmp_path / "b", vendor_adapter(dedupes=False), vendor)
    assert stats.counters.get("possible_duplicates", 0) == 0

    vendor = ScriptedVendor((500, {}))  # a vendor that dedupes: a retry is harmless
    _, _, stats = run_round(tmp_path / "c", vendor_adapter(dedupes=True), vendor)
    assert stats.counters.get("possible_duplicates", 0) == 0


def test_a_destination_type_sets_retry_defaults_and_the_yaml_overrides_them(tmp_path):
    module = vendor_adapter(default_retry={"max_attempts": 3, "max_age_s": 60})
    spec = msgspec.convert({"type": "x", "retry": {"max_attempts": 5}}, DestinationConfig)
    worker = Worker("d", spec, module, None, None, None, Metrics())
    assert (worker.policy.max_attempts, worker.policy.max_age_s) == (5, 60)
    plain = Worker("d", DestinationConfig(type="x"), vendor_adapter(), None, None, None, Metrics())
    assert (plain.policy.max_attempts, plain.policy.max_age_s) == (12, 14400)
