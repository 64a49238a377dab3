"""The embedded store: SQLite in WAL mode plus payload segment files, one group-committing
writer thread, a reader thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.store import sqlite_schema as sql
from gateway.store.base import (
    DEAD,
    DELIVERED,
    POSSIBLE_DUPLICATES,
    RETRIED,
    BackpressureError,
    Chunk,
    DeadLetterFilter,
    DeadLetterRow,
    Events,
    RejectRow,
    Settlement,
    StoreError,
    StoreStats,
)
from gateway.store.dedupe import SeenIds
from gateway.store.segments import SEGMENT_BYTES, Segments
from gateway.store.sqlite_schema import REJECTED, GroupWrite, chunk_body, split_array

LOOP_ADMIT_MIN_EVENTS = 10  # appends this big are admitted on the loop (see _Append)
MAX_GROUP_EVENTS = 5000  # one commit stays short enough that the next group is not starved
BACKPRESSURE_RETRY_AFTER_S = 30
INLINE_MAX_BYTES = 4 << 10  # smaller chunk payloads stay in their row (see the class doc)
REPLAY_CHUNK_EVENTS = 500  # a replay of 100k letters must not become one 100 MB chunk
REJECTS_KEPT = 10_000
REJECT_PAYLOAD_MAX = 4096


class _Op:
    """A write waiting for the writer: `apply(txn, *args)` runs inside the group transaction."""

    __slots__ = ("apply", "args", "weight", "future")

    def __init__(self, apply: Callable, args: tuple, weight: int, future: asyncio.Future):
        self.apply = apply
        self.args = args
        self.weight = weight
        self.future = future


class _Append:
    """One append call. For a batch, its pure-Python part (dedupe admission, its chunks)
    is done on the event loop as its group is taken, so the writer thread runs little but
    I/O: each time that thread takes the GIL back from a busy loop it can wait up to the
    switch interval."""

    __slots__ = ("batches", "counts", "accepted", "chunks", "admitted_into")

    def __init__(self, batches: Sequence[Events], counts: Mapping[tuple[str, str], int] | None):
        self.batches = batches
        self.counts = counts
        self.accepted: list[bool] = []
        self.chunks: list[tuple[tuple[str, ...], bytes, int]] = []  # (destinations, array, events)
        self.admitted_into: list[str] | None = None  # the new_ids list of the admitting group


def _fresh_chunks(batches: Sequence[Events], accepted: list[bool]) -> list[tuple[tuple[str, ...], bytes, int]]:
    """The chunks of an append some of whose events were duplicates: only the new ones."""
    chunks, start = [], 0
    for batch in batches:
        end = start + len(batch.message_ids)
        keep = accepted[start:end]
        start = end
        if not batch.destinations or not any(keep):
            continue
        if all(keep):
            chunks.append((batch.destinations, batch.body, len(keep)))
        else:
            fresh = [item for item, new in zip(split_array(batch.body), keep) if new]
            chunks.append((batch.destinations, chunk_body(fresh), len(fresh)))
    return chunks


def _failure(exc: BaseException) -> tuple[bool, StoreError]:
    error = StoreError(f"commit failed: {exc!r}")
    error.__cause__ = exc
    return False, error


class SqliteStore:
    """The Store protocol on one SQLite file and the segment files beside it.

    Chunk payloads of `inline_max_bytes` or more are appended to segment files
    (`<path>.segments/`); SQLite holds only where they are, so each payload byte is written
    once, and settling a chunk deletes a small row instead of freeing overflow pages through
    the WAL. Smaller ones (a single-event request's) stay in their row: a group of them
    commits with one fsync instead of a segment fdatasync plus the WAL's.

    Every write (appends, settlements, replays, purges, rejects, compaction) is an op queued
    to one writer task. It takes the first op plus everything already queued behind it (up
    to MAX_GROUP_EVENTS) and applies them in ONE transaction on the writer thread, so a burst
    of requests shares one commit; no op waits for a timer. Batch appends do their pure-Python half
    (dedupe, chunk bytes) on the event loop as the group is taken, and the group's rows go in
    with one statement: the writer thread, which must win the GIL back from a busy loop after
    every blocking call, makes few of them. The group's new segment payloads
    go out in one write and fdatasync before its COMMIT, so no chunk row ever points at bytes
    a crash could lose. Reads (rows, then payloads by pread) run on a second connection on
    their own thread: WAL readers never block the writer. Dedupe ids and leases live in
    memory; the `seen` table only lets the ids outlive a restart.
    """

    def __init__(
        self,
        path: str,
        dedupe_window_s: float = 86400,
        max_backlog_bytes: int = 1 << 30,
        *,
        dedupe_max_ids: int = 2_000_000,
        load_dedupe: bool = True,
        busy_timeout_s: float = sql.BUSY_TIMEOUT_S,
        segment_bytes: int = SEGMENT_BYTES,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ):
        self._path = path
        self._segments = Segments(path + ".segments", segment_bytes)
        self._inline_max_bytes = inline_max_bytes
        self._dedupe_window_s = dedupe_window_s
        self._load_dedupe = load_dedupe  # the CLI reads and replays; it never appends
        self._max_backlog_bytes = max_backlog_bytes
        self._busy_timeout_s = busy_timeout_s
        self._seen = SeenIds(dedupe_max_ids)
        self._leased: dict[str, set[int]] = {}
        self._work_for: dict[str, asyncio.Event] = {}
        self._backlog_bytes = 0
        self._last_seq = 0
        self._queue: deque[_Op] = deque()
        self._work = asyncio.Event()
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._writer_task: asyncio.Task | None = None
        self._closing = False
        self.commit_count = 0  # group commits made (diagnostics and tests)

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="trackgate-store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="trackgate-store-reader")
        try:
            await self._in_writer(self._open_writer)
            await self._in_reader(self._open_reader)
        except BaseException:
            await self.close()
            raise
        self._writer_task = asyncio.create_task(self._write_loop(), name="trackgate-store-writer")

    async def close(self) -> None:
        """Finish every queued op, then close the connections and threads. Idempotent."""
        self._closing = True
        self._work.set()
        if self._writer_task is not None:
            await self._writer_task
            self._writer_task = None
        if self._writer is not None:
            try:  # the reader first: a lease in flight finishes its preads
                await self._in_reader(self._close_connection, "_reader_conn")
            finally:
                await self._in_writer(self._close_writer)
                for pool in (self._writer, self._reader):
                    pool.shutdown(wait=True)
                self._writer = self._reader = None

    @property
    def over_backlog(self) -> bool:
        return self._backlog_bytes >= self._max_backlog_bytes

    # -- writes ------------------------------------------------------------------------

    async def append(
        self, batches: Sequence[Events], counts: Mapping[tuple[str, str], int] | None = None
    ) -> list[bool]:
        if self.over_backlog:
            raise BackpressureError(BACKPRESSURE_RETRY_AFTER_S)
        weight = sum(len(batch.message_ids) for batch in batches)
        return await self._submit(self._append_in_txn, _Append(batches, counts), weight=weight)

    async def settle(self, destination: str, settlements: Sequence[Settlement]) -> None:
        try:
            await self._submit(
                self._settle_in_txn, destination, settlements, weight=len(settlements)
            )
        finally:
            # Failed or not, the worker is done with them: unsettled chunks get redelivered.
            self.release(destination, [s.seq for s in settlements])

    async def replay(self, destination: str, filt: DeadLetterFilter = DeadLetterFilter()) -> int:
        return await self._submit(self._replay_in_txn, destination, filt)

    async def purge(self, destination: str, filt: DeadLetterFilter = DeadLetterFilter()) -> int:
        return await self._submit(self._purge_in_txn, destination, filt)

    async def record_rejects(self, source: str, rejects: Sequence[tuple[str, str, bytes]]) -> None:
        if rejects:
            await self._submit(self._rejects_in_txn, source, rejects, weight=len(rejects))

    async def compact(self) -> None:
        await self._submit(self._compact_in_txn)

    async def ping(self) -> None:
        await self._submit(lambda txn: None)  # BEGIN IMMEDIATE + COMMIT: the lock is ours

    # -- reads -------------------------------------------------------------------------

    async def lease(self, destination: str, max_events: int) -> list[Chunk]:
        return await self._in_reader(self._read_lease, destination, max_events)

    def release(self, destination: str, seqs: Sequence[int]) -> None:
        leased = self._leased.get(destination)
        if leased:
            leased.difference_update(seqs)

    async def next_due(self, destination: str) -> float | None:
        return await self._in_reader(self._read_next_due, destination)

    async def wait_for_work(self, destination: str, timeout_s: float) -> None:
        event = self._work_for.setdefault(destination, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            pass
        event.clear()

    async def dead_letters(
        self, destination: str | None, filt: DeadLetterFilter = DeadLetterFilter()
    ) -> list[DeadLetterRow]:
        where, params = sql.dead_letter_query(destination, filt)
        query = f"SELECT {sql.DEAD_LETTER_COLUMNS} FROM dead_letters {where}"
        rows = await self._in_reader(self._read_all, query, params)
        return [DeadLetterRow(*row) for row in rows]

    async def rejects(self, source: str | None = None, limit: int = 100) -> list[RejectRow]:
        where = "" if source is None else "WHERE source = ?"
        params = ([] if source is None else [source]) + [limit]
        query = (
            "SELECT id, source, code, message, received_at, payload FROM rejects"
            f" {where} ORDER BY id DESC LIMIT ?"
        )
        return [RejectRow(*row) for row in await self._in_reader(self._read_all, query, params)]

    async def stats(self) -> StoreStats:
        return await self._in_reader(self._read_stats)

    # -- the writer ----------------------------------------------------------------------

    def _submit(self, apply: Callable, *args, weight: int = 1) -> asyncio.Future:
        if self._closing:
            raise StoreError("store is closed")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(apply, args, weight, future))
        self._work.set()
        return future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            group = self._take_group()
            now, new_ids = time.time(), []
            self._admit_appends(group, now, new_ids)
            outcomes, woken = await loop.run_in_executor(self._writer, self._commit, group, now, new_ids)
            for op, (ok, value) in zip(group, outcomes):
                if op.future.done():  # the caller gave up waiting; the write stands
                    continue
                if ok:
                    op.future.set_result(value)
                else:
                    op.future.set_exception(value)
            for destination in woken:
                self._work_for.setdefault(destination, asyncio.Event()).set()

    def _take_group(self) -> list[_Op]:
        """The first op and whatever queued behind it while the last commit ran (no linger)."""
        group = [self._queue.popleft()]
        weight = group[0].weight
        while self._queue and weight < MAX_GROUP_EVENTS:
            op = self._queue.popleft()
            group.append(op)
            weight += op.weight
        return group

    def _commit(
        self, group: list[_Op], now: float, new_ids: list[str]
    ) -> tuple[list[tuple[bool, object]], set[str]]:
        """Writer thread: apply `group` in one transaction; outcome per op, woken destinations.
        `new_ids`: the dedupe ids its appends were admitted with at `now` (undone on failure)."""
        try:
            return self._commit_in_one_txn(group, now, new_ids)
        except (sqlite3.OperationalError, OSError) as exc:  # locked, I/O error, disk full
            return [_failure(exc) for _ in group], set()
        except Exception as exc:
            if len(group) == 1:
                return [_failure(exc)], set()
        # One op's bad input must not fail the requests that merely shared its commit.
        outcomes: list[tuple[bool, object]] = []
        woken: set[str] = set()
        for op in group:
            op_outcomes, op_woken = self._commit([op], time.time(), [])  # appends re-admitted
            outcomes += op_outcomes
            woken |= op_woken
        return outcomes, woken

    def _commit_in_one_txn(
        self, group: list[_Op], now: float, new_ids: list[str]
    ) -> tuple[list[tuple[bool, object]], set[str]]:
        conn = self._writer_conn
        txn = GroupWrite(conn, self._segments, now, self._last_seq, self._inline_max_bytes, new_ids)
        try:  # BEGIN too: the group's appends were admitted before it
            conn.execute("BEGIN IMMEDIATE")
            results = [op.apply(txn, *op.args) for op in group]
            txn.flush()
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(txn)
            raise
        self.commit_count += 1
        txn.committed()
        self._last_seq = txn.last_seq
        self._backlog_bytes += txn.bytes_delta
        if txn.checkpoint:
            try:  # PASSIVE: never waits for readers; the WAL file is kept for reuse
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # the commit stands; the next compaction checkpoints again
        return [(True, result) for result in results], txn.woken

    def _rollback(self, txn: GroupWrite) -> None:
        if self._writer_conn.in_transaction:
            try:
                self._writer_conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled back on its own (e.g. after an I/O error)
        self._seen.forget(txn.new_ids)

    # -- ops, run on the writer thread inside a group transaction ---------------------------

    def _admit_appends(self, group: list[_Op], now: float, new_ids: list[str]) -> None:
        """On the event loop, as the group is taken: nothing else admits ids meanwhile (the
        last group has committed or been undone), so the order is as if done in the writer.
        Only batches: a single event's share is small, and under a load of single events the
        loop, not the writer, is what is busiest."""
        for op in group:
            if op.weight >= LOOP_ADMIT_MIN_EVENTS and op.apply == self._append_in_txn:
                try:
                    self._admit(op.args[0], now, new_ids)
                except Exception:  # bad input: met again in the transaction, which isolates it
                    pass

    def _admit(self, append: _Append, now: float, new_ids: list[str]) -> None:
        """The pure-Python half of an append: which events are new, and their chunks. On
        failure (bad input) nothing of it stays admitted."""
        append.admitted_into = None
        mark = len(new_ids)
        batches = append.batches
        try:
            ids = batches[0].message_ids if len(batches) == 1 else [i for b in batches for i in b.message_ids]
            accepted = self._seen.admit(ids, now, new_ids)
            if accepted is None:  # all new: each batch's array is a chunk as it is
                append.accepted = [True] * len(ids)
                append.chunks = [(b.destinations, b.body, len(b.message_ids)) for b in batches if b.destinations]
            else:
                append.accepted = accepted
                append.chunks = _fresh_chunks(batches, accepted)
        except BaseException:
            self._seen.forget(new_ids[mark:])
            del new_ids[mark:]
            raise
        append.admitted_into = new_ids

    def _append_in_txn(self, txn: GroupWrite, append: _Append) -> list[bool]:
        if append.admitted_into is not txn.new_ids:  # a retry on its own, after a failed group
            self._admit(append, txn.now, txn.new_ids)
        for destinations, body, n_events in append.chunks:
            txn.add_new(destinations, body, n_events)
            txn.woken.update(destinations)
        if append.counts:
            txn.counts.update(append.counts)
        return append.accepted

    def _settle_in_txn(
        self, txn: GroupWrite, destination: str, settlements: Sequence[Settlement]
    ) -> None:
        conn = txn.conn
        seqs = sql.json_list(s.seq for s in settlements)
        pending = {row[0]: row[1:] for row in conn.execute(sql.SETTLING, (destination, seqs))}
        done: list[int] = []
        retry_in_place: list[tuple] = []
        dead_letters: list[tuple] = []
        for s in settlements:
            if s.seq not in pending:
                continue  # not (or no longer) pending here: settled twice, or purged
            attempts, received_at, n_events = pending[s.seq]
            if len(s.retry) == n_events:  # retry them all: keep the chunk, move its due time
                retry_in_place.append((attempts + 1, s.retry_at, s.error, destination, s.seq))
            else:
                done.append(s.seq)
                if s.retry:
                    txn.add_chunk(
                        (destination,), s.retry, received_at, attempts + 1, s.retry_at, s.error
                    )
            dead_letters.extend(sql.dead_letter_row(destination, d, txn.now) for d in s.dead)
            txn.counts[destination, DELIVERED] += s.delivered
            txn.counts[destination, RETRIED] += len(s.retry)
            txn.counts[destination, DEAD] += len(s.dead)
            if s.possible_duplicates:
                txn.counts[destination, POSSIBLE_DUPLICATES] += s.possible_duplicates
        conn.executemany(sql.RETRY_IN_PLACE, retry_in_place)
        if done:
            conn.execute(sql.DELETE_DELIVERIES, (destination, sql.json_list(done)))
        conn.executemany(sql.INSERT_DEAD_LETTER, dead_letters)
        txn.drop_unreferenced_chunks(done)

    def _replay_in_txn(self, txn: GroupWrite, destination: str, filt: DeadLetterFilter) -> int:
        where, params = sql.dead_letter_query(destination, filt)
        rows = txn.conn.execute(f"SELECT id, payload FROM dead_letters {where}", params).fetchall()
        for start in range(0, len(rows), REPLAY_CHUNK_EVENTS):
            payloads = [payload for _, payload in rows[start : start + REPLAY_CHUNK_EVENTS]]
            # received now: max_age_s counts from the replay, or it would expire at once
            txn.add_chunk((destination,), payloads, txn.now)
        txn.conn.executemany("DELETE FROM dead_letters WHERE id = ?", ((id_,) for id_, _ in rows))
        if rows:
            txn.woken.add(destination)
        return len(rows)

    def _purge_in_txn(self, txn: GroupWrite, destination: str, filt: DeadLetterFilter) -> int:
        where, params = sql.dead_letter_query(destination, filt)
        query = f"DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters {where})"
        return txn.conn.execute(query, params).rowcount

    def _rejects_in_txn(
        self, txn: GroupWrite, source: str, rejects: Sequence[tuple[str, str, bytes]]
    ) -> None:
        rows = [
            (source, code, message, txn.now, bytes(payload[:REJECT_PAYLOAD_MAX]))
            for code, message, payload in rejects
        ]
        txn.conn.executemany(sql.INSERT_REJECT, rows)
        txn.conn.execute(sql.TRIM_REJECTS, (REJECTS_KEPT,))
        txn.counts[source, REJECTED] += len(rows)

    def _compact_in_txn(self, txn: GroupWrite) -> None:
        cutoff = txn.now - self._dedupe_window_s
        self._seen.expire(cutoff)
        txn.conn.execute(sql.EXPIRE_SEEN, (cutoff,))
        txn.checkpoint = True

    # -- reads, run on the reader thread ------------------------------------------------

    def _read_lease(self, destination: str, max_events: int) -> list[Chunk]:
        # Marked leased here, on the one reader thread, so two leases can never overlap. The
        # copy is taken before the query's snapshot: a chunk settled and released while the
        # query runs may still be in that snapshot, but it stays skipped.
        leased = self._leased.setdefault(destination, set())
        now, skip = time.time(), set(leased)
        rows = sql.due_chunks(self._reader_conn, self._segments, destination, now, max_events, skip)
        leased.update(row[0] for row in rows)
        return [Chunk(seq, destination, *rest) for seq, *rest in rows]

    def _read_next_due(self, destination: str) -> float | None:
        leased = sql.json_list(frozenset(self._leased.get(destination, ())))
        (due,) = self._reader_conn.execute(sql.NEXT_DUE, (destination, leased)).fetchone()
        return due

    def _read_all(self, query: str, params: Sequence[object]) -> list[tuple]:
        return self._reader_conn.execute(query, params).fetchall()

    def _read_stats(self) -> StoreStats:
        destinations, rejected = sql.read_stats(self._reader_conn, time.time())
        return StoreStats(
            destinations=destinations,
            # Never negative: chunks another process added (a CLI replay) are subtracted
            # when settled here but were never added to this process's running total.
            backlog_bytes=max(0, self._backlog_bytes),
            max_backlog_bytes=self._max_backlog_bytes,
            rejected=rejected,
            dedupe_ids=len(self._seen),
        )

    # -- threads and connections ------------------------------------------------------------

    def _in_writer(self, fn: Callable, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def _in_reader(self, fn: Callable, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    def _open_writer(self) -> None:
        conn = self._writer_conn = sql.connect(self._path, self._busy_timeout_s)
        conn.executescript(sql.SCHEMA)
        conn.executescript(sql.GROUP_ROWS_TRIGGER)
        sql.check_layout(conn, self._path)
        (self._backlog_bytes,) = conn.execute(
            "SELECT coalesce(sum(nbytes), 0) FROM chunks"
        ).fetchone()
        self._segments.open(lambda: {s: rest for s, *rest in conn.execute(sql.CHUNKS_PER_SEGMENT)})
        if not self._load_dedupe:
            return
        cutoff = time.time() - self._dedupe_window_s
        for received_at, message_ids in conn.execute(sql.LIVE_SEEN, (cutoff,)):
            self._seen.load(sql.decode_ids(message_ids), received_at)

    def _open_reader(self) -> None:
        self._reader_conn = sql.connect(self._path, self._busy_timeout_s)
        self._reader_conn.execute("PRAGMA query_only=ON")

    def _close_writer(self) -> None:
        try:
            self._segments.close(lambda segment: sql.segment_in_use(self._writer_conn, segment))
        finally:
            self._close_connection("_writer_conn")

    def _close_connection(self, attribute: str) -> None:
        conn = getattr(self, attribute)
        if conn is not None:
            conn.close()
            setattr(self, attribute, None)
