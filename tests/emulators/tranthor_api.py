"""An emulator of Tranthor's public app API (Dittofeed's `/api/public/apps/*`).

Like Dittofeed (vendor-apis.md 5.1): Fastify refuses first (413 over the body limit, 415 for a
Content-Type other than JSON or text, 400 in Fastify's error shape for invalid JSON or an item
that breaks the schema, naming it: `body/batch/0 must have required property 'messageId'`),
then the controller: `/alias` is always 400 `{"message":"Not yet implemented."}`, a missing or
wrong key is 401 `{"message":"InvalidWriteKey"}` (`"Invalid write key."` on /track), and a
valid request is 204 with an empty body. The key check compares the token after the scheme
word of `authorization` with the configured one: the scheme is ignored, the token not decoded.
Scripted failures (``fail_next``/``always``) answer after those checks, instead of accepting.

Accepted items are kept in ``events`` (dicts as sent, with `type`; single-path bodies get the
path's type) and requests in ``requests`` as ``(headers, body)``. Dittofeed stores every
message, duplicates too, and deduplicates on `messageId` when it reads: ``duplicates`` counts
the items whose `messageId` was already accepted, ``message_ids`` holds the distinct ones.
``accept_then_fail(n, status)`` accepts the next ``n`` valid requests but answers ``status``,
a response lost after the vendor stored the events.

Run as a process: ``python -m tests.emulators.tranthor_api --port P --write-key TOKEN``
(prints its URL; ``GET /stats`` answers ``{"events", "unique", "duplicates", ...}``).
"""

from __future__ import annotations

import argparse
import collections
import hmac
from typing import Any

import msgspec
from aiohttp import web

from tests.emulators.base import Emulator, json_response, serve_forever

PREFIX = "/api/public/apps/"
SINGLE_TYPES = ("identify", "track", "page", "screen", "group")
MAX_REQUEST_BYTES = 5 * 1024 * 1024  # Dittofeed's default apiBodyLimit
_REASONS = {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type"}
_decode = msgspec.json.Decoder().decode


def fastify_error(status: int, message: str, code: str | None = None) -> web.Response:
    body: dict[str, Any] = {"statusCode": status, "error": _REASONS.get(status, "Error"), "message": message}
    if code:
        body["code"] = code
    return json_response(status, body)


class _SchemaError(Exception):
    pass


def check_item(item: Any, where: str, kind: str | None) -> None:
    """Dittofeed's TypeBox schema for one message (`kind` None: a batch item with `type`)."""
    if not isinstance(item, dict):
        raise _SchemaError(f"{where} must be object")
    kind = kind or item.get("type")
    if kind not in SINGLE_TYPES:
        raise _SchemaError(f"{where}/type must be equal to one of the allowed values")
    if not isinstance(item.get("messageId"), str):
        raise _SchemaError(f"{where} must have required property 'messageId'")
    if not isinstance(item.get("userId"), str) and not isinstance(item.get("anonymousId"), str):
        raise _SchemaError(f"{where} must have required property 'userId'")
    required = {"track": "event", "group": "groupId"}.get(kind)
    if required and not isinstance(item.get(required), str):
        raise _SchemaError(f"{where} must have required property '{required}'")
    for name in ("timestamp", "name"):
        if name in item and not isinstance(item[name], str):
            raise _SchemaError(f"{where}/{name} must be string")
    for name in ("context", "traits", "properties"):
        if name in item and not isinstance(item[name], dict):
            raise _SchemaError(f"{where}/{name} must be object")
    if "files" in item and not isinstance(item["files"], list):
        raise _SchemaError(f"{where}/files must be array")
    if "assigned" in item and not isinstance(item["assigned"], bool):
        raise _SchemaError(f"{where}/assigned must be boolean")


class TranthorEmulator(Emulator):
    def __init__(self, write_key: str = "tranthor-token", port: int = 0, max_request_bytes: int = MAX_REQUEST_BYTES):
        super().__init__(port)
        self.write_key = write_key
        self.max_request_bytes = max_request_bytes
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[Any, Any]] = []
        self.duplicates = 0
        self._ids: set[str] = set()
        self._lose_replies: collections.deque[int] = collections.deque()

    def routes(self) -> list[web.RouteDef]:
        singles = [web.post(PREFIX + kind, self._handle) for kind in (*SINGLE_TYPES, "batch")]
        return [web.post(PREFIX + "alias", self._alias), *singles]

    def counters(self) -> dict[str, int]:
        return {
            "events": len(self.events),
            "unique": len(self._ids),
            "duplicates": self.duplicates,
            "requests": len(self.requests),
            "attempts": self.attempt_count,
        }

    def _clear_records(self):
        self.events.clear()
        self.requests.clear()
        self._ids.clear()
        self.duplicates = 0

    @property
    def message_ids(self) -> set[str]:
        return self._ids

    def accept_then_fail(self, n: int = 1, status: int = 500) -> None:
        """Store the next ``n`` valid requests' events, then answer ``status`` anyway."""
        with self._lock:
            self._lose_replies.extend([status] * n)

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_until(lambda: len(self.events) >= n, timeout)

    def wait_for_unique(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_until(lambda: len(self._ids) >= n, timeout)

    async def _alias(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.record(request, raw, 400)
        return json_response(400, {"message": "Not yet implemented."})

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        kind = request.path.removeprefix(PREFIX)
        refused = self._fastify(request, raw, kind)
        if isinstance(refused, web.Response):
            self.record(request, raw, refused.status)
            return refused
        body, items = refused
        if not self._authorised(request):
            self.record(request, raw, 401)
            # Dittofeed's /track handler words it differently from the others
            return json_response(401, {"message": "Invalid write key." if kind == "track" else "InvalidWriteKey"})
        answer = await self.scripted()
        if answer is not None:
            self.record(request, raw, answer.status)
            return answer
        with self._lock:
            lost = self._lose_replies.popleft() if self._lose_replies else None
        headers = request.headers.copy()

        def accept():
            self.requests.append((headers, body))
            for item in items:
                message_id = item["messageId"]
                self.duplicates += message_id in self._ids
                self._ids.add(message_id)
                self.events.append(item)

        if lost is not None:
            self.record(request, raw, lost, accept)
            return json_response(lost, {"message": "stored, but the reply was lost"})
        self.record(request, raw, 204, accept)
        return web.Response(status=204)

    def _fastify(self, request: web.Request, raw: bytes, kind: str) -> web.Response | tuple[Any, list[dict]]:
        """What Fastify answers before the controller runs, or the parsed (body, items)."""
        if len(raw) > self.max_request_bytes:
            return fastify_error(413, "Request body is too large", "FST_ERR_CTP_BODY_TOO_LARGE")
        media = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media not in ("application/json", "text/plain"):
            return fastify_error(415, f"Unsupported Media Type: {media}", "FST_ERR_CTP_INVALID_MEDIA_TYPE")
        try:
            body = _decode(raw)
        except msgspec.DecodeError as error:
            return fastify_error(400, f"Unexpected token in JSON: {error}")
        try:
            if kind == "batch":
                if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
                    raise _SchemaError("body must have required property 'batch'")
                for index, item in enumerate(body["batch"]):
                    check_item(item, f"body/batch/{index}", None)
                items = body["batch"]
            else:
                check_item(body, "body", kind)
                items = [{**body, "type": kind}]
        except _SchemaError as error:
            return fastify_error(400, str(error), "FST_ERR_VALIDATION")
        return body, items

    def _authorised(self, request: web.Request) -> bool:
        _, _, token = request.headers.get("authorization", "").partition(" ")
        return hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self.write_key.encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--write-key", default="tranthor-token", help="the token after `Basic `")
    args = parser.parse_args(argv)
    serve_forever(TranthorEmulator(args.write_key, args.port))


if __name__ == "__main__":
    main()
