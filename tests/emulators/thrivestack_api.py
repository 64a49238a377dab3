"""An emulator of ThriveStack's telemetry API (POST /api/identify, /api/track, /api/group).

Like ThriveStack's public API pages: the key in `x-api-key` (401 otherwise); the body a JSON
array of one or more objects, each with a string `user_id`, plus `event_name` on track and
`group_id` on group (400 otherwise, the whole array refused); 200
``{"success": true, "eventId": "evt_<n>"}`` else. ThriveStack publishes no size limit:
``max_request_bytes`` (None by default) answers 413 above it.

Accepted items are kept per endpoint in ``items`` (``{"identify": [...], "track": [...],
"group": [...]}``, dicts as sent) and in arrival order in ``received`` as ``(endpoint, item)``;
accepted requests in ``requests`` as ``(path, headers, items)``; every request in ``attempts``.

Scripting, beyond the base's ``fail_next``/``always``/``set_delay``:
- ``refuse_items(predicate)``: answer 400 to any array holding an item for which
  ``predicate(endpoint, item)`` is true (a "poison" item ThriveStack refuses);
- ``accept_then_fail(n, status)``: the next ``n`` valid requests are recorded as accepted but
  answered ``status`` (the vendor processed them, the answer got lost: a retry duplicates).

Run as a process: ``python -m tests.emulators.thrivestack_api --port P --api-key K``
(prints its URL; ``GET /stats`` answers ``{"identify": n, "track": n, "group": n, ...}``).
"""

from __future__ import annotations

import argparse
import collections
import hmac
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from tests.emulators.base import Emulator, json_response, serve_forever

ENDPOINTS = ("identify", "track", "group")
REQUIRED = {"identify": ("user_id",), "track": ("event_name", "user_id"), "group": ("group_id", "user_id")}

_decode_any = msgspec.json.Decoder()


class Refusal(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ThriveStackEmulator(Emulator):
    def __init__(self, api_key: str = "test-api-key", port: int = 0, max_request_bytes: int | None = None):
        super().__init__(port)
        self.api_key = api_key
        self.max_request_bytes = max_request_bytes
        self.items: dict[str, list[dict[str, Any]]] = {endpoint: [] for endpoint in ENDPOINTS}
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[tuple[str, Any, list[dict[str, Any]]]] = []
        self._refuse: Callable[[str, dict], bool] | None = None
        self._accept_then_fail: collections.deque[int] = collections.deque()
        self._ids = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post(f"/api/{endpoint}", self._handle) for endpoint in ENDPOINTS]

    def counters(self) -> dict[str, int]:
        counts = {endpoint: len(items) for endpoint, items in self.items.items()}
        return {**counts, "items": len(self.received), "requests": len(self.requests), "attempts": self.attempt_count}

    def _clear_records(self):
        for items in self.items.values():
            items.clear()
        self.received.clear()
        self.requests.clear()

    # -- scripting --------------------------------------------------------------------------

    def refuse_items(self, predicate: Callable[[str, dict], bool] | None):
        """400 for any array holding an item `predicate(endpoint, item)` calls bad (None: off)."""
        with self._lock:
            self._refuse = predicate

    def accept_then_fail(self, n: int = 1, status: int = 500):
        """Record the next `n` valid requests as accepted, but answer them `status`."""
        with self._lock:
            self._accept_then_fail.extend([status] * n)

    def reset(self):
        super().reset()
        with self._lock:
            self._refuse = None
            self._accept_then_fail.clear()

    # -- reading ----------------------------------------------------------------------------

    @property
    def item_count(self) -> int:
        return len(self.received)

    def wait_for_items(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least `n` items were accepted (all endpoints); False on timeout."""
        return self.wait_until(lambda: len(self.received) >= n, timeout)

    # -- serving ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        endpoint = request.path.rsplit("/", 1)[1]
        raw = await request.read()
        key = request.headers.get("x-api-key", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(key, self.api_key.encode()):
            self.record(request, raw, 401)
            return json_response(401, {"success": False, "message": "Unauthorized: invalid or missing API key"})
        if self.max_request_bytes is not None and len(raw) > self.max_request_bytes:
            self.record(request, raw, 413)
            return json_response(413, {"success": False, "message": "Payload too large"})
        answer = await self.scripted()
        if answer is not None:
            self.record(request, raw, answer.status)
            return answer
        try:
            items = self._validate(endpoint, raw)
        except Refusal as refusal:
            self.record(request, raw, 400)
            return json_response(400, {"success": False, "message": f"Bad Request: {refusal.message}"})
        with self._lock:
            status = self._accept_then_fail.popleft() if self._accept_then_fail else 200
            self._ids += 1
            event_id = f"evt_{self._ids}"
        headers = request.headers.copy()

        def accept():
            self.items[endpoint].extend(items)
            self.received.extend((endpoint, item) for item in items)
            self.requests.append((request.path, headers, items))

        self.record(request, raw, status, accept)
        if status != 200:
            return json_response(status, {"success": False, "message": "Server Error: try again later"})
        return json_response(200, {"success": True, "eventId": event_id})

    def _validate(self, endpoint: str, raw: bytes) -> list[dict[str, Any]]:
        try:
            body = _decode_any.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as error:
            raise Refusal(f"invalid JSON: {error}") from None
        if not isinstance(body, list) or not body or not all(isinstance(item, dict) for item in body):
            raise Refusal("the body must be an array of one or more objects")
        for index, item in enumerate(body):
            for field in REQUIRED[endpoint]:
                if not isinstance(item.get(field), str) or not item[field]:
                    raise Refusal(f"[{index}].{field} is required")
        with self._lock:
            refuse = self._refuse
        if refuse is not None and any(refuse(endpoint, item) for item in body):
            raise Refusal("an item was refused")
        return body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-api-key")
    parser.add_argument("--max-request-bytes", type=int, default=None)
    args = parser.parse_args(argv)
    serve_forever(ThriveStackEmulator(args.api_key, args.port, args.max_request_bytes))


if __name__ == "__main__":
    main()
