"""The durable-ingest floor: raw ASGI, typed msgspec decode, append + eager group-committed fsync.

The irreducible work of the gateway's ingest, nothing else: read the body, decode it into the
typed Segment Structs (400 if invalid), append the raw body to a file, and answer
``200 {"success":true}`` only after an fsync that covers the write. Group commit is eager: one
helper thread fsyncs as soon as a write is waiting and no fsync is in flight; every request whose
write came before that fsync started is answered when it ends. (perf-floors.md: durable_asgi.py
with DURABLE_MODE=fsync, FSYNC_INTERVAL_MS=0.)

The file is ``$BENCH_FLOOR_FILE``. Past ``$BENCH_FLOOR_MAX_BYTES`` (1 GiB; 0 = never) it is
replaced by a fresh one, so a long run cannot fill the disk; the old one is closed (its blocks
freed, ~0.2 s per GiB) on a thread of its own, never on the loop or the fsync thread.
GET /readyz and /healthz answer 200.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import msgspec

from bench.schema import DECODERS

OK = b'{"success":true}'
JSON = (b"content-type", b"application/json")
MAX_BYTES = int(os.environ.get("BENCH_FLOOR_MAX_BYTES", 1 << 30))


class GroupCommitLog:
    """An append-only file whose ``append`` returns once an fsync covers the write."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = 0
        self.waiting: list[asyncio.Future] = []
        self.in_flight = False
        self.syncer = ThreadPoolExecutor(1, thread_name_prefix="fsync")
        self.reaper = ThreadPoolExecutor(1, thread_name_prefix="reaper")

    async def append(self, data: bytes) -> None:
        if MAX_BYTES and self.size > MAX_BYTES and not self.waiting:
            self._rotate()
        os.write(self.fd, data)
        self.size += len(data)
        done = asyncio.get_running_loop().create_future()
        self.waiting.append(done)
        if not self.in_flight:
            self._sync()
        await done

    def _rotate(self) -> None:
        """A fresh file; the old one is closed (its blocks freed) off the loop and the fsync thread."""
        old = self.fd
        os.unlink(self.path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = 0
        # after any fsync of `old` already queued on the syncer, close it on the reaper thread
        self.syncer.submit(self.reaper.submit, os.close, old)

    def _sync(self) -> None:
        self.in_flight = True
        covered, self.waiting = self.waiting, []
        future = asyncio.get_running_loop().run_in_executor(self.syncer, os.fsync, self.fd)
        future.add_done_callback(lambda f: self._synced(covered, f))

    def _synced(self, covered: list[asyncio.Future], future: asyncio.Future) -> None:
        self.in_flight = False
        error = future.exception()
        for waiter in covered:
            if not waiter.done():
                waiter.set_exception(error) if error else waiter.set_result(None)
        if self.waiting:
            self._sync()

    def close(self) -> None:
        self.syncer.shutdown(wait=True)
        self.reaper.shutdown(wait=True)
        os.close(self.fd)


_log: GroupCommitLog | None = None


def _open_log() -> GroupCommitLog:
    global _log
    if _log is None:
        path = os.environ.get("BENCH_FLOOR_FILE") or os.path.join(tempfile.gettempdir(), f"floor-{os.getpid()}.log")
        _log = GroupCommitLog(path)
    return _log


async def _reply(send, status: int, body: bytes) -> None:
    headers = [JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _open_log()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _log is not None:
                _log.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] != "http":
        return
    path = scope["path"]
    if scope["method"] == "GET" and path in ("/readyz", "/healthz"):
        return await _reply(send, 200, b'{"ok":true}')
    decode = DECODERS.get(path)
    if decode is None or scope["method"] != "POST":
        return await _reply(send, 404, b'{"success":false}')
    body = await _read_body(receive)
    try:
        decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return await _reply(send, 400, b'{"success":false}')
    await _open_log().append(body)
    await _reply(send, 200, OK)
