"""Sending an OutboundRequest: HTTP(S) through a pooled aiohttp session, file:// by appending
and fsyncing. Either way the answer is a Response; a failure to get one raises."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

from gateway.adapter import OutboundRequest, Response

MAX_RESPONSE_BYTES = 64 * 1024  # enough to classify and to keep in a dead letter
_FILE_OK = Response(200, {}, b"")


def _end_line(fd: int) -> None:
    """A crash mid-write can leave a partial last line; start ours on a fresh one."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")


class FileSink:
    """Appends to files and fsyncs them in one thread: a file destination's delivery is
    done only when its lines are on disk."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="trackgate-file")
        self._fds: dict[str, int] = {}

    def _append(self, path: str, body: bytes) -> None:
        fd = self._fds.get(path)
        if fd is None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = self._fds[path] = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            _end_line(fd)
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)

    async def send(self, path: str, body: bytes) -> Response:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._append, path, body)
        return _FILE_OK

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class Transport:
    def __init__(self, base_dir: Path, user_agent: str = "trackgate/0.1") -> None:
        self._base_dir = base_dir
        self._session: aiohttp.ClientSession | None = None
        self._files = FileSink()
        self._user_agent = user_agent

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self._user_agent}, auto_decompress=True
            )
        return self._session

    async def send(self, request: OutboundRequest, timeout_s: float) -> Response:
        if request.url.startswith("file://"):
            path = Path(request.url[len("file://") :])
            return await self._files.send(str(path if path.is_absolute() else self._base_dir / path), request.body)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self._http().request(
            request.method, request.url, data=request.body, headers=list(request.headers), timeout=timeout
        ) as response:
            body = await response.content.read(MAX_RESPONSE_BYTES)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Response(response.status, headers, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._files.close()
