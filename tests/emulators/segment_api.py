"""An emulator of Segment's HTTP tracking API (POST /v1/batch and the single-call paths).

Like Segment: HTTP Basic auth with the write key as the user and an empty password (401
otherwise), 400 on invalid JSON or a body over 500 KB, 200 ``{"success": true}`` else.
Accepted events are kept in ``events`` (dicts, batch items as sent) and the accepted requests in
``requests`` as ``(headers, parsed body)``; every request, with its status, in ``attempts``.

``count_only=True`` is the bench's fast mode: it keeps no events nor attempts, only counts them
and the distinct ``messageId``s (each batch item is decoded into a one-field Struct).

Run as a process: ``python -m tests.emulators.segment_api --port P --write-key K [--count-only]``
(prints its URL; ``GET /stats`` answers ``{"events": n, "unique": u, ...}``).
"""

from __future__ import annotations

import argparse
import base64
import hmac
from typing import Any

import msgspec
from aiohttp import web

from tests.emulators.base import Emulator, json_response, serve_forever

SINGLE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_REQUEST_BYTES = 500 * 1024  # Segment: "500 KB per batch request"


class _IdOnly(msgspec.Struct):
    messageId: str = ""


class _CountBatch(msgspec.Struct):
    batch: list[_IdOnly]


_count_batch = msgspec.json.Decoder(_CountBatch)
_count_single = msgspec.json.Decoder(_IdOnly)
_decode_any = msgspec.json.Decoder()


def basic_auth(write_key: str) -> str:
    """The Authorization header Segment expects: ``Basic base64("<writeKey>:")``."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


class SegmentEmulator(Emulator):
    def __init__(
        self,
        write_key: str = "test-write-key",
        port: int = 0,
        count_only: bool = False,
        max_request_bytes: int | None = MAX_REQUEST_BYTES,
    ):
        super().__init__(port)
        self.write_key = write_key
        self.count_only = count_only
        self.keep_attempts = not count_only
        self.max_request_bytes = max_request_bytes
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[Any, Any]] = []
        self.event_count = 0
        self.request_count = 0
        self._ids: set[str] = set()
        self._auth = basic_auth(write_key).encode()

    def routes(self) -> list[web.RouteDef]:
        singles = [web.post(f"/v1/{kind}", self._single) for kind in SINGLE_TYPES]
        return [web.post("/v1/batch", self._batch), *singles]

    def counters(self) -> dict[str, int]:
        return {
            "events": self.event_count,
            "unique": len(self._ids),
            "requests": self.request_count,
            "attempts": self.attempt_count,
        }

    def _clear_records(self):
        self.events.clear()
        self.requests.clear()
        self._ids.clear()
        self.event_count = self.request_count = 0

    @property
    def message_ids(self) -> set[str]:
        """Distinct messageIds accepted so far (both modes)."""
        return self._ids

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` events were accepted; False on timeout."""
        return self.wait_until(lambda: self.event_count >= n, timeout)

    async def _batch(self, request: web.Request) -> web.Response:
        return await self._handle(request, batch=True)

    async def _single(self, request: web.Request) -> web.Response:
        return await self._handle(request, batch=False)

    async def _handle(self, request: web.Request, batch: bool) -> web.Response:
        raw = await request.read()
        answer = self._check(request, raw)
        if answer is None:
            answer = await self.scripted()
        if answer is not None:
            self.record(request, raw, answer.status)
            return answer
        try:
            accept = self._accept_counts(raw, batch) if self.count_only else self._accept_full(request, raw, batch)
        except (msgspec.DecodeError, ValueError) as error:
            self.record(request, raw, 400)
            return json_response(400, {"code": "invalid_request", "message": f"Invalid JSON: {error}"})
        self.record(request, raw, 200, accept)
        return json_response(200, {"success": True})

    def _check(self, request: web.Request, raw: bytes) -> web.Response | None:
        """Segment's refusals before any script: a wrong key (401), a body too large (400)."""
        header = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(header, self._auth):
            return json_response(401, {"code": "invalid_write_key", "message": "Invalid write key"})
        if self.max_request_bytes is not None and len(raw) > self.max_request_bytes:
            return json_response(400, {"code": "payload_too_large", "message": "Payload too large"})
        return None

    def _accept_counts(self, raw: bytes, batch: bool):
        if batch:
            ids = [item.messageId for item in _count_batch.decode(raw).batch]
        else:
            ids = [_count_single.decode(raw).messageId]

        def accept():
            self.event_count += len(ids)
            self.request_count += 1
            self._ids.update(ids)

        return accept

    def _accept_full(self, request: web.Request, raw: bytes, batch: bool):
        body = _decode_any.decode(raw)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if batch:
            items = body.get("batch")
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise ValueError("`batch` must be a list of objects")
        else:
            items = [{"type": request.path.rsplit("/", 1)[1], **body}]
        headers = request.headers.copy()

        def accept():
            self.events.extend(items)
            self.requests.append((headers, body))
            self.event_count += len(items)
            self.request_count += 1
            self._ids.update(str(item.get("messageId", "")) for item in items)

        return accept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--write-key", default="test-write-key")
    parser.add_argument("--count-only", action="store_true", help="count events, keep none")
    args = parser.parse_args(argv)
    serve_forever(SegmentEmulator(args.write_key, args.port, count_only=args.count_only))


if __name__ == "__main__":
    main()
