"""Delivery throughput: queue N events with the destination paused, restart unpaused, time the drain.

The backlog is loaded into a fresh store with exactly N unique messageIds (N/100 batch POSTs),
the gateway is stopped, then started again with ``paused: false``; the Segment emulator (its own
process, count-only) is polled until it has N distinct messageIds. The rate counts from the
first delivered event to the last, so gateway start-up is not in it (it is reported apart).
The bench drains BENCH_REPEAT backlogs, each in a store of its own, and keeps the fastest, as
it keeps the best of the ingest runs it compares the drain with.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from bench.payloads import BATCH_SIZE, PLACEHOLDER, token
from bench.targets import SEGMENT, SOURCE_KEY, Destination, Server, start_gateway
from tests.emulators.segment_api import basic_auth

POLL_S = 0.02


@dataclass
class DeliveryResult:
    events: int  # N, the backlog
    delivered: int  # events the emulator received (duplicates included)
    unique: int  # distinct messageIds among them
    complete: bool
    drain_s: float  # first to last delivered event
    startup_to_done_s: float  # gateway process start to the last event
    events_s: float
    gateway_cpu_us_per_event: float  # while draining
    emulator_cpu_us_per_event: float
    load_s: float  # how long queueing the backlog took (paused ingest)

    def as_dict(self) -> dict:
        return asdict(self)


def best(drains: list[DeliveryResult]) -> dict:
    """The fastest of several drains, as the ingest figures are the best of their runs, with
    the range over all of them; complete only if every drain was."""
    top = max(drains, key=lambda d: d.events_s)
    rates = [d.events_s for d in drains]
    return {**top.as_dict(), "complete": all(d.complete for d in drains), "events_s_range": [min(rates), max(rates)]}


def stats(emulator: Server) -> dict[str, int]:
    with urllib.request.urlopen(emulator.url + "/stats", timeout=5) as response:
        return json.loads(response.read())


async def _post_backlog(url: str, bodies: list[bytes], requests: int, concurrency: int = 16) -> None:
    tag = secrets.token_hex(2)
    headers = {"Authorization": basic_auth(SOURCE_KEY), "Content-Type": "application/json"}
    counter = iter(range(requests))

    async def worker(session: aiohttp.ClientSession, thread: int) -> None:
        for n in counter:
            body = bodies[n % len(bodies)].replace(PLACEHOLDER.encode(), token(tag, thread, n).encode())
            async with session.post(url + "/v1/batch", data=body, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"backlog POST answered {response.status}: {await response.text()}")

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session, i) for i in range(concurrency)))


def run(
    workdir: Path,
    emulator: Server,
    pool: Path,
    events: int,
    timeout_s: float,
    destination: Destination = SEGMENT,
    attempt: int = 0,
) -> DeliveryResult:
    """Queue `events` (rounded up to whole batches) paused, then time the drain to `emulator`
    (each `attempt` on a store of its own)."""
    bodies = pool.read_bytes().splitlines()
    requests = -(-events // BATCH_SIZE)
    events = requests * BATCH_SIZE
    store = workdir / f"delivery-{destination.name}-{attempt}" / "trackgate.db"
    store.parent.mkdir(parents=True, exist_ok=True)

    def start(paused: bool, name: str) -> Server:
        return start_gateway(workdir, store, emulator.url, paused, f"{name}-{destination.name}-{attempt}", destination)

    gateway = start(True, "gateway-backlog")
    try:
        started = time.monotonic()
        asyncio.run(asyncio.wait_for(_post_backlog(gateway.url, bodies, requests), timeout_s))
        load_s = time.monotonic() - started
    finally:
        gateway.stop()

    before = stats(emulator)
    emulator_cpu = emulator.proc.cpu_seconds()
    launched = time.monotonic()
    gateway = start(False, "gateway-deliver")
    try:
        first_t, first_n, first_cpu, now = None, 0, 0.0, before
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = stats(emulator)
            delivered = now["events"] - before["events"]
            if first_t is None and delivered > 0:
                first_t, first_n, first_cpu = time.monotonic(), delivered, gateway.proc.cpu_seconds()
            if now["unique"] - before["unique"] >= events:
                break
            time.sleep(POLL_S)
        done_t = time.monotonic()
        gateway_cpu = gateway.proc.cpu_seconds() - first_cpu
    finally:
        gateway.stop()
    delivered = now["events"] - before["events"]
    unique = now["unique"] - before["unique"]
    drain_s = done_t - first_t if first_t is not None else 0.0
    return DeliveryResult(
        events=events,
        delivered=delivered,
        unique=unique,
        complete=unique >= events,
        drain_s=round(drain_s, 3),
        startup_to_done_s=round(done_t - launched, 3),
        events_s=(delivered - first_n) / drain_s if drain_s > 0 else 0.0,
        gateway_cpu_us_per_event=gateway_cpu / max(delivered - first_n, 1) * 1e6,
        emulator_cpu_us_per_event=(emulator.proc.cpu_seconds() - emulator_cpu) / max(delivered, 1) * 1e6,
        load_s=round(load_s, 3),
    )
