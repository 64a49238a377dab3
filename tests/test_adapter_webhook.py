"""Webhook adapter properties: batching bounds and a signature receivers can verify."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import pytest

from adapters import webhook
from gateway.adapter import Identify, raw


def _few(count: int) -> list:
    return [Identify(user_id=f"u{i}", message_id=f"m{i}", traits=raw({"i": i}))
            for i in range(count)]


def _events(seed: int) -> list:
    rng = random.Random(seed)
    sizes = (0, 100, 4_000, 300_000, 5_100_000)
    return [
        Identify(user_id=f"u{i}", message_id=f"m{i}", source="web",
                 traits=raw({"pad": "y" * rng.choices(sizes, (50, 40, 10, 0.5, 0.05))[0]}))
        for i in range(rng.randrange(1, 2_500))
    ]


@pytest.mark.parametrize("seed", range(10))
def test_every_event_in_exactly_one_request_within_limits(seed: int) -> None:
    settings = webhook.Settings(url="https://hooks.example.com/in", secret="s3cret")
    limits = webhook.batch_limits(settings)
    events = _events(seed)
    requests = webhook.build_requests(events, settings)
    assert [i for request in requests for i in request.events] == list(range(len(events)))
    for request in requests:
        assert len(request.events) <= limits.max_events
        assert len(request.body) <= limits.max_bytes or len(request.events) == 1
        sent = json.loads(request.body)["batch"]
        assert [item["messageId"] for item in sent] == [f"m{i}" for i in request.events]
        assert all(item["source"] == "web" for item in sent)


def test_receiver_verifies_the_signature_as_the_docstring_says() -> None:
    secret = "whsec_ünïcode"
    settings = webhook.Settings(url="https://hooks.example.com/in", secret=secret)
    (request,) = webhook.build_requests(_few(5), settings)
    header = dict(request.headers)["X-Trackgate-Signature"]
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, header)
    tampered = request.body.replace(b"u0", b"u9", 1)
    forged = "sha256=" + hmac.new(secret.encode(), tampered, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(forged, header)


def test_no_secret_no_signature() -> None:
    settings = webhook.Settings(url="https://hooks.example.com/in")
    (request,) = webhook.build_requests(_few(2), settings)
    assert "X-Trackgate-Signature" not in dict(request.headers)
