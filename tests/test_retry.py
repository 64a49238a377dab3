"""The retry policy: which statuses retry, Retry-After, full-jitter backoff, giving up."""

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from gateway.retry import RetryPolicy, http_verdict, may_have_landed, network_verdict, parse_retry_after


@pytest.mark.parametrize(
    "status, expected",
    [
        (200, "delivered"), (204, "delivered"),
        (408, "retry"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"),
        (501, "dead"), (400, "dead"), (401, "dead"), (403, "dead"), (404, "dead"), (422, "dead"),
        (413, "split"),
    ],
)
def test_status_classes(status, expected):
    verdict = http_verdict(status, {})
    assert verdict.status == expected
    if status >= 300:
        assert verdict.code == f"http_{status}"


def test_retry_after_seconds_and_dates():
    assert http_verdict(429, {"retry-after": "7"}).retry_after_s == 7.0
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("999999") == 3600.0


def test_network_errors_retry():
    assert network_verdict(ConnectionResetError("reset")).status == "retry"
    assert network_verdict(TimeoutError()).code == "timeout"


def test_backoff_is_full_jitter_exponential_and_capped():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=60.0)
    assert [policy.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 8.0, 60.0]
    assert policy.delay(5, rng=lambda: 0.0) == 0.0
    assert policy.delay(1, retry_after_s=30, rng=lambda: 0.5) == 30


def test_gives_up_only_past_both_limits():
    policy = RetryPolicy(max_attempts=3, max_age_s=100)
    assert not policy.gives_up(3, 50)  # attempts used up, but young
    assert not policy.gives_up(2, 500)  # old, but attempts left
    assert policy.gives_up(3, 100)


def test_only_requests_that_may_have_landed_count_as_possible_duplicates():
    assert network_verdict(ConnectionRefusedError("refused")).code == "connect_error"
    assert not may_have_landed(network_verdict(ConnectionRefusedError("refused")))
    assert may_have_landed(network_verdict(ConnectionResetError("reset")))
    assert may_have_landed(network_verdict(TimeoutError()))
    assert may_have_landed(http_verdict(500)) and may_have_landed(http_verdict(502))
    assert not may_have_landed(http_verdict(503))  # promises nothing was processed
    assert not may_have_landed(http_verdict(429))
