"""A generic webhook receiver: records every POST (any path) and checks trackgate's signature.

With ``secret`` set, a request must carry ``X-Trackgate-Signature: sha256=<hex HMAC-SHA256(secret,
raw body)>``; one without a valid signature is answered 401 and counted in ``bad_signatures``.
Accepted requests are kept in ``requests`` as ``(headers, parsed body)`` (the raw bytes when the
body is not JSON), their events in ``events`` (a JSON list, or the list under ``batch`` or
``events``, or the object itself); every request, with its status, in ``attempts``.

Run as a process: ``python -m tests.emulators.webhook_receiver --port P [--secret S]``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
from typing import Any

import msgspec
from aiohttp import web

from tests.emulators.base import Emulator, json_response, serve_forever

SIGNATURE_HEADER = "X-Trackgate-Signature"


def sign(secret: str, body: bytes) -> str:
    """The header value trackgate sends: ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    expected = sign(secret, body).encode()
    return header is not None and hmac.compare_digest(header.encode("utf-8", "surrogateescape"), expected)


def events_of(body: Any) -> list[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("batch", "events"):
            if isinstance(body.get(key), list):
                return body[key]
        return [body]
    return []


class WebhookReceiver(Emulator):
    def __init__(self, secret: str | None = None, port: int = 0, status: int = 200):
        super().__init__(port)
        self.secret = secret
        self.status = status  # the success status to answer (200, 202, 204…)
        self.requests: list[tuple[Any, Any]] = []
        self.events: list[Any] = []
        self.bad_signatures = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{tail:.*}", self._receive)]

    def counters(self) -> dict[str, int]:
        return {
            "events": len(self.events),
            "requests": len(self.requests),
            "attempts": self.attempt_count,
            "bad_signatures": self.bad_signatures,
        }

    def _clear_records(self):
        self.requests.clear()
        self.events.clear()
        self.bad_signatures = 0

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_until(lambda: len(self.events) >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_until(lambda: len(self.requests) >= n, timeout)

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.secret is not None and not verify_signature(
            self.secret, raw, request.headers.get(SIGNATURE_HEADER)
        ):

            def count():
                self.bad_signatures += 1

            self.record(request, raw, 401, count)
            return json_response(401, {"error": "bad_signature"})
        answer = await self.scripted()
        if answer is not None:
            self.record(request, raw, answer.status)
            return answer
        try:
            body: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            body = raw
        headers = request.headers.copy()

        def accept():
            self.requests.append((headers, body))
            self.events.extend(events_of(body))

        self.record(request, raw, self.status, accept)
        if self.status == 204:
            return web.Response(status=204)
        return json_response(self.status, {"ok": True})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", default=None)
    args = parser.parse_args(argv)
    serve_forever(WebhookReceiver(args.secret, args.port))


if __name__ == "__main__":
    main()
