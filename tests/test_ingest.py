"""Ingest in-process: what the engine answers when an adapter fails unexpectedly."""

import asyncio

from adapters import segment
from gateway.config import parse
from gateway.ingest import Ingest
from gateway.metrics import Metrics


def test_a_bug_in_decoding_is_a_retryable_503_in_the_vendor_shape(monkeypatch):
    config = parse(
        {
            "sources": {"web": {"format": "segment", "keys": ["k"], "destinations": ["a"]}},
            "destinations": {"a": {"type": "file", "settings": {"path": "a.jsonl"}}},
        },
        {},
    )

    def broken(request, limits):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(segment, "decode", broken)
    ingest = Ingest(config, store=None, metrics=Metrics())
    reply = asyncio.run(ingest.handle("segment", "POST", "/v1/track", {}, b"{}", None))
    assert reply.status == 503 and b'"error":"internal_error"' in reply.body
    assert ("Retry-After", "5") in reply.headers


def test_an_atomic_dialect_refuses_the_whole_request_and_records_the_bad_items(monkeypatch, tmp_path):
    """Vendors like Amplitude refuse a request with any invalid event; the SDK then drops
    the named events and resends the rest, so nothing of it may be stored."""
    from gateway.adapter import Decoded, Reject
    from gateway.event import Track
    from gateway.store.sqlite import SqliteStore

    config = parse(
        {
            "sources": {"web": {"format": "segment", "keys": ["k"], "destinations": ["a"]}},
            "destinations": {"a": {"type": "file", "settings": {"path": "a.jsonl"}}},
        },
        {},
    )
    seen = []
    vendor_reply_error = segment.reply_error

    def atomic_decode(request, limits):
        good = Track(message_id="m0", user_id="u", event="e")
        reject = Reject(1, "missing_field", "event 1 has no event_type", b'{"user_id":"u"}', field="event_type")
        return Decoded("k", [good], [reject], atomic=True)

    def reply_error(request, error):
        seen.append(error)
        return vendor_reply_error(request, error)

    monkeypatch.setattr(segment, "decode", atomic_decode)
    monkeypatch.setattr(segment, "reply_error", reply_error)

    async def scenario():
        store = SqliteStore(str(tmp_path / "t.db"))
        await store.open()
        try:
            reply = await Ingest(config, store, Metrics()).handle("segment", "POST", "/v1/batch", {}, b"[]", None)
            return reply, await store.stats(), await store.rejects("web", 10)
        finally:
            await store.close()

    reply, stats, rejects = asyncio.run(scenario())
    assert reply.status == 400
    assert [(r.index, r.field) for r in seen[0].rejects] == [(1, "event_type")]
    assert "a" not in stats.destinations  # the valid event was not stored either
    assert [r.code for r in rejects] == ["missing_field"]
