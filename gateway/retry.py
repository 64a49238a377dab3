"""The one retry policy: which responses are retried, how long to wait, when to give up."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Literal

import aiohttp
import msgspec

MAX_RETRY_AFTER_S = 3600.0  # a destination may ask for a pause; not for a day


class Verdict(msgspec.Struct, frozen=True):
    """What to do with one event after a delivery attempt.

    delivered: done. retry: try again later, with backoff (and not before `retry_after_s`
    if the destination said so; per event, so only throttled users wait). resend: this
    event was not at fault (others in its request were named as bad or throttled): send it
    again at once in a fresh request, no attempt counted. dead: permanent, goes to the
    dead-letter queue. split: the request was too large; send its events again in smaller
    requests. pause: the destination refuses our credentials or config (a 401): stop
    delivering to it until it is fixed and restarted; the events stay pending.
    """

    status: Literal["delivered", "retry", "resend", "dead", "split", "pause"]
    code: str = "ok"  # stable snake_case: ok, http_429, http_400, network_error, ...
    retry_after_s: float | None = None
    detail: str = ""
    # False when only this event must wait (a vendor named its user as throttled): a round
    # that delivers nothing then does not hold back the whole destination.
    hold_destination: bool = True


DELIVERED = Verdict("delivered")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date. None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def http_verdict(status: int, headers: Mapping[str, str] | None = None) -> Verdict:
    """The default verdict for an HTTP status: 2xx delivered; 408, 429, 5xx (not 501)
    retried, honouring Retry-After; 413 split; every other status is permanent."""
    if 200 <= status < 300:
        return DELIVERED
    code = f"http_{status}"
    if status == 413:
        return Verdict("split", code)
    if status in (408, 429) or (status >= 500 and status != 501):
        after = parse_retry_after((headers or {}).get("retry-after"))
        return Verdict("retry", code, retry_after_s=after)
    return Verdict("dead", code)


def network_verdict(error: BaseException) -> Verdict:
    """Connection failures and timeouts are always worth another try. A connection never
    made (`connect_error`) cannot have delivered anything; a timeout or a connection lost
    mid-request (`network_error`) may have."""
    if isinstance(error, TimeoutError):
        code = "timeout"
    elif isinstance(error, (ConnectionRefusedError, aiohttp.ClientConnectorError)):
        code = "connect_error"
    else:
        code = "network_error"
    return Verdict("retry", code, detail=f"{type(error).__name__}: {error}"[:300])


def may_have_landed(verdict: Verdict) -> bool:
    """Whether a retried request may already have been taken by the destination, so that
    sending it again can duplicate where the vendor has no idempotency key. 503 is the
    status that promises nothing was processed (Amplitude documents it so)."""
    code = verdict.code
    if code in ("timeout", "network_error"):
        return True
    return code.startswith("http_5") and code != "http_503"


class RetryPolicy(msgspec.Struct, frozen=True):
    """Full-jitter exponential backoff; give up only once both limits are passed."""

    max_attempts: int = 12
    max_age_s: float = 14400.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0

    def delay(self, attempts: int, retry_after_s: float | None = None, rng=random.random) -> float:
        """Seconds to wait before attempt number `attempts + 1` (attempts made so far >= 1)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(attempts - 1, 30)))
        wait = rng() * ceiling
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return wait

    def gives_up(self, attempts: int, age_s: float) -> bool:
        """True when an event has been tried `max_attempts` times and is older than
        `max_age_s`: a short outage never exhausts attempts, a long queue still gets them."""
        return attempts >= self.max_attempts and age_s >= self.max_age_s
