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
