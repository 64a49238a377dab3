"""The delivery worker in-process: an adapter bug dead-letters its events with the
traceback; oversize events are dead-lettered unsent; a 413 on one event is final."""

import asyncio
import types

import msgspec
from pathlib import Path

from gateway.adapter import BatchLimits, OutboundRequest, Response, Verdict
from gateway.config import BatchConfig, DestinationConfig, RetryConfig
from gateway.delivery import Worker
from gateway.event import Track, encode_event
from gateway.metrics import Metrics
from gateway.store.base import DeadLetterFilter
from tests.appends import append
from gateway.store.sqlite import SqliteStore


class FakeTransport:
    """Answers every request with `status` and remembers what was sent."""

    def __init__(self, status: int = 200):
        self.status = status
        self.sent: list[OutboundRequest] = []

    async def send(self, request, timeout_s):
        self.sent.append(request)
        return Response(self.status, {}, b"")


def adapter(build=None, max_event_bytes=None):
    def build_requests(events, settings):
        return [OutboundRequest("http://127.0.0.1:9/", b"x", tuple(range(len(events))))]

    def classify(request, response):
        if response.status == 413:
            return [Verdict("split", "http_413")] * len(request.events)
        return [Verdict("delivered")] * len(request.events)

    return types.SimpleNamespace(
        batch_limits=lambda settings: BatchLimits(100, 1_000_000, max_event_bytes),
        build_requests=build or build_requests,
        classify=classify,
    )


def deliver(tmp_path: Path, module, transport, events) -> list:
    async def scenario():
        store = SqliteStore(str(tmp_path / "t.db"))
        await store.open()
        try:
            await append(store, [(e.message_id, encode_event(e), ("d",)) for e in events])
            spec = DestinationConfig(type="x")
            worker = Worker("d", spec, module, None, store, transport, Metrics())
            await worker._deliver(await store.lease("d", 100))
            await asyncio.gather(*worker._settling)
            return await store.dead_letters("d", DeadLetterFilter())
        finally:
            await store.close()

    return asyncio.run(scenario())


def track(n: int, **fields) -> Track:
    return Track(message_id=f"m{n}", user_id="u", event="e", **fields)


def test_an_adapter_bug_dead_letters_with_its_traceback(tmp_path):
    def broken(events, settings):
        raise KeyError("surprise")

    letters = deliver(tmp_path, adapter(build=broken), FakeTransport(), [track(1), track(2)])
    assert sorted(letter.message_id for letter in letters) == ["m1", "m2"]
    assert all(letter.reason == "adapter_error" and "KeyError: 'surprise'" in letter.detail for letter in letters)


def test_oversize_events_are_dead_lettered_unsent(tmp_path):
    from gateway.event import raw

    transport = FakeTransport()
    big = track(1, properties=raw({"pad": "x" * 500}))
    letters = deliver(tmp_path, adapter(max_event_bytes=200), transport, [big, track(2)])
    assert [(letter.message_id, letter.reason) for letter in letters] == [("m1", "event_too_large")]
    assert len(transport.sent) == 1 and transport.sent[0].events == (0,)


def test_a_single_event_refused_as_too_large_is_final(tmp_path):
    transport = FakeTransport(status=413)
    letters = deliver(tmp_path, adapter(), transport, [track(1), track(2)])
    assert len(transport.sent) == 3  # the pair, then each half alone
    assert sorted((letter.message_id, letter.reason) for letter in letters) == [("m1", "event_too_large"), ("m2", "event_too_large")]


def test_a_damaged_chunk_is_dead_lettered_whole_not_retried_forever(tmp_path):
    """Bytes that are no JSON array (damaged storage) go to the dead-letter queue once, kept
    as they are, instead of failing every delivery round."""
    transport = FakeTransport()

    async def scenario():
        store = SqliteStore(str(tmp_path / "t.db"))
        await store.open()
        try:
            await append(store, [("bad", b'{"type":"track",', ("d",)), ("ok", encode_event(track(1)), ("e",))])
            worker = Worker("d", DestinationConfig(type="x"), adapter(), None, store, transport, Metrics())
            await worker._deliver(await store.lease("d", 100))
            await asyncio.gather(*worker._settling)
            return await store.dead_letters("d", DeadLetterFilter()), (await store.stats()).destinations["d"]
        finally:
            await store.close()

    letters, stats = asyncio.run(scenario())
    assert [(letter.reason, letter.payload) for letter in letters] == [("undecodable_chunk", b'[{"type":"track",]')]
    assert stats.pending == 0 and transport.sent == []


def track_n(n: int) -> Track:
    return Track(message_id=f"m{n}", user_id="u", event="E", timestamp="2026-01-01T00:00:00.000Z")


def test_one_store_lease_serves_every_lane_in_order_and_what_is_left_goes_back(tmp_path):
    """Rounds come from a buffer one store lease fills for all lanes: fewer leases, the same
    chunks in seq order, none twice; what no lane took is released when the worker stops."""

    async def scenario():
        store = SqliteStore(str(tmp_path / "t.db"))
        await store.open()
        try:
            for call in range(12):  # 12 chunks of 10 events
                await append(store, [(f"m{call}-{i}", encode_event(track_n(i)), ("d",)) for i in range(10)])
            leases = []
            real_lease = store.lease

            async def counted(destination, max_events):
                leases.append(max_events)
                return await real_lease(destination, max_events)

            store.lease = counted
            spec = DestinationConfig(type="x", batch=BatchConfig(max_events=20, max_in_flight=4))
            worker = Worker("d", spec, adapter(), None, store, FakeTransport(), Metrics())
            rounds = [await worker._lease(20) for _ in range(3)]
            assert leases == [80]  # one lease for four lanes' rounds
            seqs = [c.seq for r in rounds for c in r]
            assert [len(r) for r in rounds] == [2, 2, 2] and seqs == sorted(set(seqs))
            worker.stop()
            await worker.run()  # stops at once: the 2 chunks still buffered are released
            assert len(await real_lease("d", 1000)) == 12 - len(seqs)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_retried_event_keeps_its_stored_bytes_exactly(tmp_path):
    """Events are sized and, when some are retried, re-encoded from their decoded form: the
    retry chunk holds byte for byte what ingest stored for them."""
    events = [track_n(i) for i in range(3)]
    events[1].properties = msgspec.Raw('{"é":"\\u00e9 é","n":1.50,"deep":{"a":[1, 2]}}'.encode())
    stored = [encode_event(e) for e in events]

    def classify(request, response):  # the first event lands, the others are retried
        return [Verdict("delivered")] + [Verdict("retry", "http_500")] * (len(request.events) - 1)

    module = types.SimpleNamespace(**{**vars(adapter()), "classify": classify})

    async def scenario():
        store = SqliteStore(str(tmp_path / "t.db"))
        await store.open()
        try:
            await append(store, [(e.message_id, payload, ("d",)) for e, payload in zip(events, stored)])
            spec = DestinationConfig(type="x", retry=RetryConfig(backoff_base_s=0, backoff_max_s=0))
            worker = Worker("d", spec, module, None, store, FakeTransport(500), Metrics())
            await worker._deliver(await store.lease("d", 100))
            await asyncio.gather(*worker._settling)
            await asyncio.sleep(0.01)
            return await store.lease("d", 100)
        finally:
            await store.close()

    [retry] = asyncio.run(scenario())
    assert retry.payload == b"[" + stored[1] + b"," + stored[2] + b"]"
