"""The ASGI app: a thin raw-ASGI fast path for ingest routes, plus health, readiness,
metrics and CORS. Starts the store and delivery workers in its lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from pathlib import Path

import msgspec

from gateway import registry
from gateway.adapter import IngestError, InboundRequest, Reply
from gateway.config import GatewayConfig
from gateway.delivery import Delivery
from gateway.ingest import Ingest
from gateway.metrics import Metrics
from gateway.store.base import Store

log = logging.getLogger("trackgate.app")

COMPACT_EVERY_S = 60.0
DRAIN_BYTES = 16 * 1024 * 1024  # past this an oversize body is cut off, not read
# The store's writer thread lets go of the GIL at every blocking call and must win it back
# from the event loop, which under load holds it until asked to drop it after this long.
# Python's 5 ms default set the pace of a commit; 0.2 ms gave ~7 % more batch ingest
# (bench A/B, 6 rounds) and left single-event ingest as it was.
GIL_SWITCH_INTERVAL_S = 0.0002
# A young-generation GC pass every 20,000 new container objects instead of Python's 700:
# objects that live for one delivery round or one commit (an Item per event) survived
# several passes at 700, were promoted and walked again in the older generations; at 20,000
# most are freed by reference counting before any pass sees them.
# Draining 600,000 events to the Segment emulator, four alternating pairs: 274-283k events/s
# against 247-269k; batched ingest 0.62 against 0.59 of the floor (median of 4 rounds).
GC_YOUNG_THRESHOLD = 20_000
_json = msgspec.json.encode


def open_store(config: GatewayConfig, base_dir: Path, for_ingest: bool = True) -> Store:
    """The configured store; `for_ingest=False` (the CLI) skips loading the dedupe ids."""
    from gateway.store.sqlite import SqliteStore

    path = Path(config.store.path)
    return SqliteStore(
        str(path if path.is_absolute() else base_dir / path),
        dedupe_window_s=config.store.dedupe_window_s,
        max_backlog_bytes=config.store.max_backlog_bytes,
        dedupe_max_ids=config.store.dedupe_max_ids,
        load_dedupe=for_ingest,
    )


class Gateway:
    """The ASGI callable."""

    def __init__(self, config: GatewayConfig, base_dir: Path | None = None):
        self.config = config
        self.base_dir = base_dir or Path.cwd()
        self.metrics = Metrics()
        self.store = open_store(config, self.base_dir)
        self.ingest = Ingest(config, self.store, self.metrics)
        self.delivery = Delivery(config, self.store, self.metrics, self.base_dir)
        self.routes = {
            path: fmt for fmt in self.ingest.dialects for path in registry.source(fmt).ROUTES
        }  # POST path -> source format
        self.max_body = {fmt: d.limits.max_request_bytes for fmt, d in self.ingest.dialects.items()}
        origins = config.server.cors_origins
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode() for o in origins)
        self._housekeeping: asyncio.Task | None = None

    # ---- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope, receive, send):
        path = scope["path"]
        method = scope["method"]
        fmt = self.routes.get(path)
        if fmt is not None:
            if method == "POST":
                return await self._ingest(fmt, scope, receive, send)
            if method == "OPTIONS":
                return await self._preflight(scope, send)
            return await self._reply(send, scope, 405, b'{"error":"method_not_allowed"}')
        if method == "GET":
            if path == "/healthz":
                return await self._reply(send, scope, 200, b'{"status":"ok"}')
            if path == "/readyz":
                return await self._readyz(scope, send)
            if path == "/metrics":
                body = self.metrics.render(await self.store.stats())
                return await self._reply(send, scope, 200, body, b"text/plain; version=0.0.4")
        await self._reply(send, scope, 404, b'{"error":"not_found"}')

    async def _ingest(self, fmt: str, scope, receive, send):
        # ASGI servers give header names in lower case already.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.max_body[fmt]
        body = await _read_body(receive, limit, headers.get("content-length"))
        client_ip = self._client_ip(scope, headers)
        if body is None:
            adapter = self.ingest.dialects[fmt].adapter
            error = IngestError(413, "request_too_large", f"request body is over {limit} bytes")
            request = InboundRequest("POST", scope["path"], headers, b"", "", client_ip)
            reply = adapter.reply_error(request, error)
        else:
            reply = await self.ingest.handle(fmt, "POST", scope["path"], headers, body, client_ip)
        await self._send_reply(send, scope, reply)

    def _client_ip(self, scope, headers: dict[str, str]) -> str | None:
        if self.config.server.trust_proxy_headers:
            forwarded = headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else None

    def _cors(self, scope) -> list[tuple[bytes, bytes]]:
        origin = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
                break
        if origin is None or not (self.any_origin or origin in self.origins):
            return []
        # Echo the origin (not "*"): sendBeacon requests carry cookies (credentials mode).
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", b"Retry-After"),
            (b"vary", b"Origin"),
        ]

    async def _preflight(self, scope, send):
        requested = next((v for k, v in scope["headers"] if k == b"access-control-request-headers"), None)
        headers = self._cors(scope) + [
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", requested or b"authorization, content-type, x-retry-count"),
            (b"access-control-max-age", b"86400"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _readyz(self, scope, send):
        problems = []
        try:
            await asyncio.wait_for(self.store.ping(), timeout=5)
        except Exception as error:  # any failure means not ready; say which
            problems.append(f"store not writable: {error or type(error).__name__}")
        if self.store.over_backlog:
            problems.append("backlog over its cap (back-pressure)")
        status = 503 if problems else 200
        # A paused destination does not stop ingest (its events queue), so it is reported
        # without failing readiness.
        body = _json(
            {
                "status": "not ready" if problems else "ready",
                "problems": problems,
                "paused_destinations": self.delivery.paused(),
            }
        )
        await self._reply(send, scope, status, body)

    async def _send_reply(self, send, scope, reply: Reply):
        if reply.status == 204:  # no content: no content headers either (RFC 9110 8.6)
            headers = []
        else:
            headers = [(b"content-length", str(len(reply.body)).encode())]
            if reply.content_type:
                headers.append((b"content-type", reply.content_type.encode()))
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        headers += self._cors(scope)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _reply(self, send, scope, status: int, body: bytes, content_type: bytes = b"application/json"):
        await self._send_reply(send, scope, Reply(status, body, content_type.decode()))

    # ---- lifespan --------------------------------------------------------------------

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as error:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        await self.store.open()
        self.delivery.start()
        self._housekeeping = asyncio.create_task(self._compact_forever())
        gc.collect()
        gc.freeze()  # start-up objects live forever: keep them out of every GC pass
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        log.info(
            "trackgate started",
            extra={"sources": len(self.config.sources), "destinations": len(self.delivery.workers)},
        )

    async def stop(self) -> None:
        log.info("trackgate stopping: finishing requests in flight")
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        await self.delivery.stop()
        await self.store.close()
        log.info("trackgate stopped")

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(COMPACT_EVERY_S)
            try:
                await self.store.compact()
            except Exception:
                log.exception("compaction failed")


async def _read_body(receive, limit: int, content_length: str | None) -> bytes | None:
    """The whole body, or None once it is over `limit` bytes. An oversize body is read and
    dropped (up to DRAIN_BYTES) so the client gets its 413 instead of a broken pipe."""
    declared = int(content_length) if content_length is not None and content_length.isdigit() else None
    too_large = declared is not None and declared > limit
    if too_large and declared > DRAIN_BYTES:
        return None
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            too_large = True
        if not too_large:
            chunks.append(chunk)
        if not message.get("more_body", False) or size > DRAIN_BYTES:
            break
    if too_large:
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
