"""Delivery: one worker per destination. Lease chunks -> batch -> build requests (adapter)
-> send -> classify (adapter) -> settle: delivered, retried with backoff, or dead-lettered."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import traceback
from pathlib import Path
from types import ModuleType

import aiohttp
import msgspec

from gateway import registry
from gateway.adapter import OutboundRequest, Response
from gateway.config import DestinationConfig, GatewayConfig
from gateway.event import BaseEvent, Event, decode_event, encode_event
from gateway.metrics import Metrics
from gateway.retry import Verdict, may_have_landed, network_verdict
from gateway.store.base import Chunk, DeadLetter, Settlement, Store
from gateway.transport import Transport

log = logging.getLogger("trackgate.delivery")

_split_chunk = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_chunk = msgspec.json.Decoder(list[Event]).decode
_encoder = msgspec.json.Encoder()  # sizes events: encode_into one reused buffer (see _items)
EXCERPT = 2048  # bytes of a request/response body kept with a dead letter
MAX_SPLIT_DEPTH = 16
MAX_RESENDS = 8  # rounds of "send the rest again at once" after a partial failure
# When an event is in several requests, its worst outcome stands.
_SEVERITY = {"delivered": 0, "resend": 1, "retry": 2, "pause": 3, "dead": 4}


def _worse(old: Verdict | None, new: Verdict) -> bool:
    return old is None or _SEVERITY[new.status] > _SEVERITY[old.status]


class Item:
    """One event of a delivery round: its canonical bytes are kept only when it came from a
    chunk decoded event by event; else they are its encoding again, made when needed (a
    retry, a dead letter)."""

    __slots__ = ("chunk", "size", "_payload", "event", "verdict", "exchange")

    def __init__(self, chunk: int, size: int, event: BaseEvent | None, payload: msgspec.Raw | None = None):
        self.chunk = chunk
        self.size = size
        self._payload = payload
        self.event = event
        self.verdict: Verdict | None = None
        self.exchange = ("", "")

    @property
    def payload(self) -> bytes | msgspec.Raw:
        if self._payload is None:
            self._payload = encode_event(self.event)
        return self._payload


def _decode_or_none(payload: msgspec.Raw) -> BaseEvent | None:
    try:
        return decode_event(payload)
    except msgspec.DecodeError:
        return None


def _too_large(size: int, limit: int) -> Verdict:
    return Verdict("dead", "event_too_large", detail=f"{size} bytes; the limit is {limit}")


def _describe_request(request: OutboundRequest) -> str:
    # Headers are left out on purpose: they carry the destination's credentials.
    return f"{request.method} {request.url}\n{request.body[:EXCERPT].decode('utf-8', 'replace')}"


def _describe_response(response: Response) -> str:
    return f"HTTP {response.status}\n{response.body[:EXCERPT].decode('utf-8', 'replace')}"


class Worker:
    """Delivers one destination's backlog with `max_in_flight` concurrent lanes."""

    def __init__(
        self,
        name: str,
        spec: DestinationConfig,
        adapter: ModuleType,
        settings: msgspec.Struct,
        store: Store,
        transport: Transport,
        metrics: Metrics,
    ):
        self.name = name
        self.adapter = adapter
        self.settings = settings
        self.store = store
        self.transport = transport
        self.metrics = metrics
        limits = adapter.batch_limits(settings)
        self.max_events = min(spec.batch.max_events or limits.max_events, limits.max_events)
        self.max_bytes = min(spec.batch.max_bytes, limits.max_bytes)
        self.max_event_bytes = limits.max_event_bytes
        self.max_wait_s = spec.batch.max_wait_ms / 1000
        self.lanes = spec.batch.max_in_flight
        self.policy = spec.retry.policy(getattr(adapter, "DEFAULT_RETRY", None))
        self.dedupes = getattr(adapter, "DEDUPES", True)
        self.paused: str | None = None  # why the destination refused us; set until restart
        self.timeout_s = spec.timeout_s
        self._stopping = asyncio.Event()
        self._hold_until = 0.0  # the whole destination waits after a failed request
        # Settles commit in the background so a lane leases its next batch meanwhile; the
        # chunks stay leased until their settle commits, so nothing is sent twice. Two per
        # lane: a settle takes a group commit (~10 ms in a drain), a round about half that.
        self._settling: set[asyncio.Task] = set()
        self._settle_slots = asyncio.Semaphore(2 * self.lanes)
        self._scratch = bytearray()  # where _size_of encodes
        # Chunks leased for all lanes at once, taken a round at a time (see _lease).
        self._ready: collections.deque[Chunk] = collections.deque()
        self._refill = asyncio.Lock()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._lane() for _ in range(self.lanes)))
        finally:
            self.store.release(self.name, [c.seq for c in self._ready])  # left unsent
            self._ready.clear()
            await asyncio.gather(*self._settling, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    async def _lane(self) -> None:
        while not self._stopping.is_set():
            chunks: list[Chunk] = []
            try:
                chunks = await self._gather()
                if not chunks:
                    continue
                if self._stopping.is_set():
                    self.store.release(self.name, [c.seq for c in chunks])
                    return
                await self._deliver(chunks)
            except Exception:  # a bug must not kill the destination's worker
                log.exception("delivery round failed", extra={"destination": self.name})
                self.store.release(self.name, [c.seq for c in chunks])  # try them again
                await self._pause(1.0)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            pass

    async def _wait_for_work(self, seconds: float) -> None:
        work = asyncio.ensure_future(self.store.wait_for_work(self.name, seconds))
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stop):
            task.cancel()

    async def _gather(self) -> list[Chunk]:
        """Lease a batch: return once `max_events` are in hand or the oldest has waited
        `max_wait_ms`; an empty list after waiting for work."""
        if self.paused is not None:  # credentials refused: nothing to do until restarted
            await self._pause(1.0)
            return []
        hold = self._hold_until - time.time()
        if hold > 0:
            await self._pause(hold)
            return []
        chunks = await self._lease(self.max_events)
        if not chunks:
            due = await self.store.next_due(self.name)
            # Poll at least every second: another process (the CLI's replay) may add work.
            wait = 1.0 if due is None else min(max(due - time.time(), 0.005), 1.0)
            await self._wait_for_work(wait)
            return []
        count = sum(c.n_events for c in chunks)
        deadline = min(c.received_at for c in chunks) + self.max_wait_s
        while count < self.max_events and not self._stopping.is_set():
            remaining = deadline - time.time()
            if remaining <= 0:
                break
            await self._wait_for_work(remaining)
            more = await self._lease(self.max_events - count)
            chunks.extend(more)
            count += sum(c.n_events for c in more)
        return chunks

    async def _lease(self, max_events: int) -> list[Chunk]:
        """A round's chunks: in seq order until `max_events` events are in (at least one
        chunk when any is due). One store lease fills a buffer for every lane: each lease
        waits its turn on the store's reader thread, and with one per round, a traced drain
        had all lanes waiting on leases about 40 % of the time."""
        if not self._ready:
            async with self._refill:
                if not self._ready:
                    self._ready.extend(await self.store.lease(self.name, max_events * self.lanes))
        chunks: list[Chunk] = []
        count = 0
        while self._ready and count < max_events:
            chunk = self._ready.popleft()
            chunks.append(chunk)
            count += chunk.n_events
        return chunks

    def _items(self, chunks: list[Chunk]) -> list[Item]:
        items = []
        limit = self.max_event_bytes
        size_of = self._size_of
        for index, chunk in enumerate(chunks):
            try:
                events = _decode_chunk(chunk.payload)
            except msgspec.DecodeError:  # stored by an older version, say: find the bad one
                items += self._items_one_by_one(index, chunk)
                continue
            # Each event's size is that of its encoding (msgspec round-trips the stored
            # bytes), measured into one reused buffer: cheaper than splitting the array in a
            # second pass, and no bytes object per event.
            for event in events:
                item = Item(index, size_of(event), event)
                if limit is not None and item.size > limit:
                    item.verdict = _too_large(item.size, limit)
                items.append(item)
        return items

    def _size_of(self, event: BaseEvent) -> int:
        _encoder.encode_into(event, self._scratch)
        return len(self._scratch)

    def _items_one_by_one(self, index: int, chunk: Chunk) -> list[Item]:
        """A chunk that does not decode whole: its events one by one, the bad ones dead."""
        try:
            payloads = _split_chunk(chunk.payload)  # Raw views: copied only to retry or dead-letter
        except msgspec.DecodeError:  # damaged storage: keep the bytes where people look, once
            item = Item(index, len(chunk.payload), None, msgspec.Raw(chunk.payload))
            item.verdict = Verdict("dead", "undecodable_chunk", detail="the stored chunk is not a JSON array")
            return [item]
        items = []
        for payload in payloads:
            item = Item(index, len(payload), _decode_or_none(payload), payload)
            if item.event is None:
                item.verdict = Verdict("dead", "undecodable", detail="not a canonical event")
            elif self.max_event_bytes is not None and item.size > self.max_event_bytes:
                item.verdict = _too_large(item.size, self.max_event_bytes)
            items.append(item)
        return items

    def _batches(self, items: list[Item]) -> list[list[Item]]:
        batches: list[list[Item]] = []
        current: list[Item] = []
        size = 0
        for item in items:
            if item.verdict is not None:
                continue
            if current and (len(current) >= self.max_events or size + item.size > self.max_bytes):
                batches.append(current)
                current, size = [], 0
            current.append(item)
            size += item.size + 1
        if current:
            batches.append(current)
        return batches

    async def _deliver(self, chunks: list[Chunk]) -> None:
        items = self._items(chunks)
        for batch in self._batches(items):
            if self._stopping.is_set() or self.paused is not None:
                break  # shutting down or paused: finish what is in flight, start nothing new
            await self._send(batch, depth=0)
        self._settle_hold(items)
        untouched = {i for i in range(len(chunks))} - {item.chunk for item in items if item.verdict is not None}
        if untouched:
            self.store.release(self.name, [chunks[i].seq for i in untouched])
        settle = [i for i in range(len(chunks)) if i not in untouched]
        if settle:
            settlements = self._settlements([chunks[i] for i in settle], items, settle)
            await self._settle_slots.acquire()
            task = asyncio.create_task(self._settle(settlements))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settle(self, settlements: list[Settlement]) -> None:
        try:
            await self.store.settle(self.name, settlements)
        except Exception:  # not recorded: release the chunks so they are delivered again
            log.exception("settling a delivery failed", extra={"destination": self.name})
            self.store.release(self.name, [settlement.seq for settlement in settlements])
        finally:
            self._settle_slots.release()

    async def _send(self, batch: list[Item], depth: int, resends: int = 0) -> None:
        try:
            requests = self.adapter.build_requests([item.event for item in batch], self.settings)
        except Exception:
            self._adapter_bug(batch, "build_requests")
            return
        for request in requests:
            targets = [batch[i] for i in request.events]
            verdicts, exchange = await self._exchange(request, len(targets))
            too_large = []
            for item, verdict in zip(targets, verdicts):
                if verdict.status == "split":
                    too_large.append(item)
                elif _worse(item.verdict, verdict):
                    item.verdict, item.exchange = verdict, exchange
            self._note_pause(verdicts)
            if len(too_large) > 1 and depth < MAX_SPLIT_DEPTH:
                half = len(too_large) // 2
                await self._send(too_large[:half], depth + 1)
                await self._send(too_large[half:], depth + 1)
            elif too_large:
                for item in too_large:
                    item.verdict = Verdict("dead", "event_too_large", detail="refused as too large even when sent alone")
                    item.exchange = exchange
        for item in batch:
            if item.verdict is None:
                item.verdict = Verdict("dead", "not_encoded", detail="the adapter built no request for this event")
        await self._resend(batch, depth, resends)

    async def _resend(self, batch: list[Item], depth: int, resends: int) -> None:
        """Events a partial failure did not concern go again at once, in a fresh request;
        past MAX_RESENDS rounds they wait for a normal retry."""
        again = [item for item in batch if item.verdict.status == "resend"]
        if not again:
            return
        if resends >= MAX_RESENDS or self._stopping.is_set() or self.paused is not None:
            for item in again:
                item.verdict = Verdict("retry", item.verdict.code, detail=item.verdict.detail)
            return
        for item in again:
            item.verdict = None
        await self._send(again, depth, resends + 1)

    def _note_pause(self, verdicts: list[Verdict]) -> None:
        pause = next((v for v in verdicts if v.status == "pause"), None)
        if pause is None or self.paused is not None:
            return
        self.paused = f"{pause.code}: {pause.detail}".strip(": ")
        self.metrics.paused(self.name, True)
        log.error(
            "destination refused trackgate's credentials: delivery paused until the config is fixed and trackgate restarted; events stay queued",
            extra={"destination": self.name, "error": pause.code, "detail": pause.detail},
        )

    async def _exchange(self, request: OutboundRequest, n: int) -> tuple[list[Verdict], tuple[str, str]]:
        started = time.perf_counter()
        try:
            response = await self.transport.send(request, self.timeout_s)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            verdict = network_verdict(error)
            log.warning(
                "delivery request failed",
                extra={"destination": self.name, "error": verdict.code, "detail": verdict.detail, "events": n},
            )
            return [verdict] * n, (_describe_request(request), verdict.detail)
        self.metrics.delivery_latency(self.name, time.perf_counter() - started)
        exchange = (_describe_request(request), _describe_response(response))
        try:
            verdicts = list(self.adapter.classify(request, response))
        except Exception:
            detail = traceback.format_exc(limit=5)
            log.error("adapter classify failed", extra={"destination": self.name, "detail": detail})
            return [Verdict("dead", "adapter_error", detail=detail)] * n, exchange
        if len(verdicts) != n:
            detail = f"classify returned {len(verdicts)} verdicts for {n} events"
            return [Verdict("dead", "adapter_error", detail=detail)] * n, exchange
        if all(v.status == "resend" for v in verdicts):  # nobody to blame: a plain retry
            verdicts = [Verdict("retry", v.code, v.retry_after_s, v.detail) for v in verdicts]
        if response.status >= 300:
            log.warning(
                "destination refused a request",
                extra={"destination": self.name, "status": response.status, "events": n},
            )
        return verdicts, exchange

    def _adapter_bug(self, batch: list[Item], where: str) -> None:
        detail = f"{where}: {traceback.format_exc(limit=5)}"
        log.error("adapter failed", extra={"destination": self.name, "detail": detail})
        for item in batch:
            item.verdict = Verdict("dead", "adapter_error", detail=detail)

    def _settle_hold(self, items: list[Item]) -> None:
        """A round where nothing got through pauses the whole destination for the smallest
        wait asked for, so a down or throttling vendor is not hammered with fresh batches."""
        verdicts = [item.verdict for item in items if item.verdict is not None]
        if not verdicts or any(v.status == "delivered" for v in verdicts):
            return
        retries = [v for v in verdicts if v.status == "retry" and v.hold_destination]
        if retries:
            wait = min(v.retry_after_s if v.retry_after_s is not None else self.policy.backoff_base_s for v in retries)
            self._hold_until = max(self._hold_until, time.time() + wait)

    def _settlements(self, chunks: list[Chunk], items: list[Item], indexes: list[int]) -> list[Settlement]:
        """Outcomes of the chunks at `indexes`. An event left unsent by a shutdown is
        retried at once (counted as an attempt)."""
        now = time.time()
        position = {index: n for n, index in enumerate(indexes)}
        grouped: list[list[Item]] = [[] for _ in chunks]
        for item in items:
            if item.chunk in position:
                grouped[position[item.chunk]].append(item)
        settlements = []
        for chunk, chunk_items in zip(chunks, grouped):
            attempts = chunk.attempts + 1
            age = now - chunk.received_at
            delivered, retry, dead, delays, error, duplicates = 0, [], [], [], "", 0
            for item in chunk_items:
                verdict = item.verdict or Verdict("retry", "shutdown")
                if verdict.status == "delivered":
                    delivered += 1
                elif verdict.status == "pause":  # waits for the fix, never dead-lettered for it
                    retry.append(bytes(item.payload))
                    delays.append(0.0)
                    error = verdict.code
                elif verdict.status == "retry" and not self.policy.gives_up(attempts, age):
                    retry.append(bytes(item.payload))
                    unsent = verdict.code == "shutdown"
                    delays.append(0.0 if unsent else self.policy.delay(attempts, verdict.retry_after_s))
                    error = verdict.code
                    duplicates += not self.dedupes and may_have_landed(verdict)
                else:
                    detail = verdict.detail
                    if verdict.status == "retry":
                        detail = f"gave up after {attempts} attempts over {age:.0f}s. {detail}".strip()
                    dead.append(self._dead_letter(item, verdict, detail, attempts))
            self.metrics.delivery(self.name, "delivered", delivered)
            self.metrics.delivery(self.name, "retry", len(retry))
            self.metrics.delivery(self.name, "dead", len(dead))
            self.metrics.possible_duplicates(self.name, duplicates)
            settlements.append(
                Settlement(
                    seq=chunk.seq,
                    delivered=delivered,
                    retry=tuple(retry),
                    retry_at=now + max(delays, default=0.0),
                    error=error,
                    dead=tuple(dead),
                    possible_duplicates=duplicates,
                )
            )
        return settlements

    def _dead_letter(self, item: Item, verdict: Verdict, detail: str, attempts: int) -> DeadLetter:
        message_id = item.event.message_id if item.event is not None else ""
        log.warning(
            "event dead-lettered",
            extra={"destination": self.name, "message_id": message_id, "error": verdict.code, "attempt": attempts},
        )
        return DeadLetter(
            message_id=message_id or "",
            payload=bytes(item.payload),
            reason=verdict.code,
            detail=detail,
            attempts=attempts,
            last_request=item.exchange[0],
            last_response=item.exchange[1],
        )


class Delivery:
    """All destination workers of a gateway process."""

    def __init__(self, config: GatewayConfig, store: Store, metrics: Metrics, base_dir: Path):
        self.transport = Transport(base_dir)
        self.workers = []
        for name, spec in config.destinations.items():
            if not spec.enabled or spec.paused:
                log.info("destination not delivering", extra={"destination": name, "enabled": spec.enabled, "paused": spec.paused})
                continue
            adapter = registry.destination(spec.type)
            settings = config.destination_settings(name)
            self.workers.append(Worker(name, spec, adapter, settings, store, self.transport, metrics))
        self._tasks: list[asyncio.Task] = []

    def paused(self) -> dict[str, str]:
        """Destinations that refused trackgate's credentials, and why."""
        return {w.name: w.paused for w in self.workers if w.paused is not None}

    def start(self) -> None:
        self._tasks = [asyncio.create_task(w.run(), name=f"deliver:{w.name}") for w in self.workers]

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop leasing, let requests in flight finish and settle, leave the rest pending."""
        for worker in self.workers:
            worker.stop()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.transport.close()
