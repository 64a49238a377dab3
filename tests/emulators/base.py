"""Shared machinery of the emulators: a real aiohttp server on 127.0.0.1, scripted failures, records.

An emulator runs three ways:
- sync, in a background thread with its own event loop: ``with Emulator(...) as emu: emu.url``;
- async, on the caller's loop: ``async with Emulator(...) as emu: ...``;
- as a process: ``serve_forever(emu, port)`` from a module's ``__main__`` (prints the URL).

Scripting (thread-safe, callable from any thread): ``fail_next(n, status, headers, body)``
answers the next ``n`` authorised requests with that response instead of accepting them;
``always(status, ...)`` does so until ``reset()``; ``set_delay(seconds)`` delays every answer.
Every request is kept in ``attempts`` (with the status it got; only counted in ``attempt_count``
when ``keep_attempts`` is False); subclasses keep what they accepted. ``GET /stats`` answers the
counters as JSON.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
from aiohttp import web
from multidict import CIMultiDict

HOST = "127.0.0.1"  # emulators never bind anything else
MAX_BODY_BYTES = 64 * 1024 * 1024  # aiohttp's own limit; emulators apply the vendor's below it


class Attempt(NamedTuple):
    """One request as received, whatever it was answered."""

    method: str
    path: str
    headers: CIMultiDict
    raw: bytes
    status: int


class Scripted(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json", headers=headers
    )


def _as_bytes(status: int, body: Any) -> bytes:
    if body is None:
        body = {"success": False, "code": f"http_{status}", "message": f"scripted {status}"}
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return msgspec.json.encode(body)


class Emulator:
    """Base of every emulator; subclasses add routes in ``routes()`` and call ``scripted()``."""

    def __init__(self, port: int = 0):
        self.port = port
        self.attempts: list[Attempt] = []
        self.attempt_count = 0
        self.keep_attempts = True  # False: only count them (the bench's count-only mode)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._next: collections.deque[Scripted] = collections.deque()
        self._always: Scripted | None = None
        self._delay_s = 0.0
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    # -- what subclasses provide ------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """Served by GET /stats; subclasses extend it."""
        return {"attempts": self.attempt_count}

    # -- scripting --------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, headers: dict[str, str] | None = None, body: Any = None):
        """Answer the next ``n`` requests with ``status`` (body: bytes, str, or JSON-able)."""
        scripted = Scripted(status, dict(headers or {}), _as_bytes(status, body))
        with self._lock:
            self._next.extend([scripted] * n)

    def always(self, status: int, headers: dict[str, str] | None = None, body: Any = None):
        """Answer every request with ``status`` until ``reset()``."""
        with self._lock:
            self._always = Scripted(status, dict(headers or {}), _as_bytes(status, body))

    def set_delay(self, seconds: float):
        """Wait this long before answering any request (a slow destination)."""
        self._delay_s = seconds

    def reset(self):
        """Forget the script (``fail_next``, ``always``, delay); the records stay."""
        with self._lock:
            self._next.clear()
            self._always = None
            self._delay_s = 0.0

    def clear(self):
        """Forget what was received."""
        with self._lock:
            self.attempts.clear()
            self.attempt_count = 0
            self._clear_records()

    def _clear_records(self):
        pass

    async def scripted(self) -> web.Response | None:
        """The scripted response for this request, if any (consumes one ``fail_next``)."""
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        with self._lock:
            step = self._next.popleft() if self._next else self._always
        if step is None:
            return None
        return web.Response(status=step.status, body=step.body, headers=step.headers)

    # -- records ----------------------------------------------------------------------------

    def record(self, request: web.Request, raw: bytes, status: int, accept: Callable[[], None] | None = None):
        """Keep the attempt and, under the same lock, run ``accept`` (the subclass's bookkeeping)."""
        attempt = None
        if self.keep_attempts:
            attempt = Attempt(request.method, request.path, CIMultiDict(request.headers), raw, status)
        with self._changed:
            self.attempt_count += 1
            if attempt is not None:
                self.attempts.append(attempt)
            if accept is not None:
                accept()
            self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block (sync callers) until ``predicate()`` holds after a request; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # -- server lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes([web.get("/stats", self._stats), *self.routes()])
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        with self._lock:
            counters = self.counters()
        return json_response(200, counters)

    async def start(self):
        """Start serving on the running loop; ``self.port`` is the bound port afterwards."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self):
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    def __enter__(self):
        started = threading.Event()
        failure: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stopped = asyncio.Event()
            try:
                loop.run_until_complete(self.start())
            except BaseException as error:  # reported to the caller by __enter__
                failure.append(error)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_until_complete(self._stopped.wait())
                loop.run_until_complete(self.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"{type(self).__name__}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def __exit__(self, *exc):
        if self._thread is None:
            return
        assert self._loop is not None and self._stopped is not None
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)
        self._thread = None


def serve_forever(emulator: Emulator) -> None:
    """Run ``emulator`` as a process until SIGTERM/SIGINT; prints its URL on the first line."""
    try:
        import uvloop  # the bench drives the emulator hard; uvloop halves its CPU per request
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        uvloop = None

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with emulator:
            print(emulator.url, flush=True)
            await stop.wait()

    if uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())
