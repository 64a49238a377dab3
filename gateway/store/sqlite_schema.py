"""The SQLite store's SQL: tables, connection settings, the group write buffer and the reads."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

from gateway.store.base import DeadLetter, DeadLetterFilter, DestinationStats, StoreError
from gateway.store.segments import Segments

REJECTED = "rejected"  # the one counter kept per source rather than per destination
BUSY_TIMEOUT_S = 5.0  # the CLI opens the same file while the gateway runs
WAL_SIZE_LIMIT = 16 << 20
# Small appends of one commit merge into chunks of at most these (kept inline in their row).
MERGED_MAX_EVENTS = 500
MERGED_MAX_BYTES = 64 << 10

# A chunk's payload is either inline (`payload`, for chunks under the store's
# `inline_max_bytes`: one fsync per commit, no segment write) or in a segment file
# (segments.py): `nbytes` at `offset` in file number `segment`, both NULL when inline. Dead
# letters and rejects keep theirs here too. Payload columns come last, so a query that does
# not name them never reads their overflow pages.
SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    n_events INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    segment INTEGER,
    offset INTEGER,
    payload BLOB
);
CREATE TABLE IF NOT EXISTS deliveries (
    destination TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    PRIMARY KEY (destination, seq)
) WITHOUT ROWID;
-- "does any destination still need this chunk?" on every settle
CREATE INDEX IF NOT EXISTS deliveries_by_seq ON deliveries (seq);
-- The dedupe ids one commit accepted, as a JSON array: one row per commit, not per event,
-- and no index on message_id (random-key inserts triple the write cost). The lookups happen
-- in memory; this table only carries the ids across a restart. Rows are appended in time
-- order, so expiry deletes a rowid prefix.
CREATE TABLE IF NOT EXISTS seen (
    received_at REAL NOT NULL,
    message_ids BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    message_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL,
    last_request TEXT NOT NULL,
    last_response TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_destination ON dead_letters (destination, id);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    received_at REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    owner TEXT NOT NULL,  -- a destination, or a source for the `rejected` counter
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;
"""

INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (destination, message_id, reason, detail, attempts, failed_at,"
    " last_request, last_response, payload) VALUES (?,?,?,?,?,?,?,?,?)"
)


def dead_letter_row(destination: str, letter: DeadLetter, failed_at: float) -> tuple:
    """The parameters of INSERT_DEAD_LETTER."""
    return (
        destination,
        letter.message_id,
        letter.reason,
        letter.detail,
        letter.attempts,
        failed_at,
        letter.last_request,
        letter.last_response,
        letter.payload,
    )


DEAD_LETTER_COLUMNS = (
    "id, destination, message_id, reason, detail, attempts, failed_at, payload,"
    " last_request, last_response"
)
INSERT_REJECT = (
    "INSERT INTO rejects (source, code, message, received_at, payload) VALUES (?,?,?,?,?)"
)
TRIM_REJECTS = "DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - ?"
SETTLING = (
    "SELECT d.seq, d.attempts, c.received_at, c.n_events FROM deliveries d"
    " JOIN chunks c ON c.seq = d.seq"
    " WHERE d.destination = ? AND d.seq IN (SELECT value FROM json_each(?))"
)
DELETE_DELIVERIES = (
    "DELETE FROM deliveries WHERE destination = ? AND seq IN (SELECT value FROM json_each(?))"
)
RETRY_IN_PLACE = (
    "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, last_error = ?"
    " WHERE destination = ? AND seq = ?"
)
NEXT_DUE = (
    "SELECT min(next_attempt_at) FROM deliveries"
    " WHERE destination = ? AND seq NOT IN (SELECT value FROM json_each(?))"
)
LIVE_SEEN = "SELECT received_at, message_ids FROM seen WHERE received_at >= ? ORDER BY rowid"
EXPIRE_SEEN = (  # the prefix of rows before the first live one
    "DELETE FROM seen WHERE rowid < coalesce("
    " (SELECT rowid FROM seen WHERE received_at >= ? ORDER BY rowid LIMIT 1),"
    " (SELECT max(rowid) + 1 FROM seen))"
)

CHUNK_COLUMNS = ("seq", "received_at", "n_events", "nbytes", "segment", "offset", "payload")
CHUNKS_PER_SEGMENT = (
    "SELECT segment, count(*), sum(nbytes) FROM chunks WHERE segment IS NOT NULL"
    " GROUP BY segment"
)
_SEGMENT_TOTALS = "SELECT count(*), coalesce(sum(nbytes), 0) FROM chunks WHERE segment = ?"
_CHUNKS_IN_SEGMENTS = (  # a scan (no index on segment): once per rotation at most
    "SELECT seq, segment, offset, nbytes FROM chunks"
    " WHERE segment IN (SELECT value FROM json_each(?)) ORDER BY seq"
)
_MOVE_CHUNK = "UPDATE chunks SET segment = ?, offset = ?, payload = ? WHERE seq = ?"
CHUNK_LOCATION = "SELECT segment, offset, nbytes, payload FROM chunks WHERE seq = ?"
_INSERT_CHUNK = (
    "INSERT INTO chunks (seq, received_at, n_events, nbytes, segment, offset, payload)"
    " VALUES (?,?,?,?,?,?,?)"
)
# Statements on many rows take them as one JSON array: one statement step, where an
# executemany steps once per row. Each step lets go of the GIL, and the writer thread takes it
# back from a busy event loop at a cost of up to the switch interval (see app.py): under load,
# the steps a commit makes, not its rows, set how long it takes.
_DELETE_CHUNKS = "DELETE FROM chunks WHERE seq IN (SELECT value FROM json_each(?))"
_ORPHANED_CHUNKS = (
    "SELECT seq, nbytes, segment FROM chunks WHERE seq IN (SELECT value FROM json_each(?))"
    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = chunks.seq)"
)
_DUE_CHUNKS = (  # leased chunks are left out here, not stepped over: each step costs a GIL wait
    "SELECT d.seq, d.attempts, c.received_at, c.n_events, c.segment, c.offset, c.nbytes,"
    " c.payload FROM deliveries d"
    " JOIN chunks c ON c.seq = d.seq"
    " WHERE d.destination = ? AND d.next_attempt_at <= ?"
    " AND d.seq NOT IN (SELECT value FROM json_each(?)) ORDER BY d.seq"
)
_PENDING_BY_DESTINATION = (
    "SELECT d.destination, sum(c.n_events),"
    " sum(CASE WHEN d.attempts > 0 THEN c.n_events ELSE 0 END), min(c.received_at)"
    " FROM deliveries d JOIN chunks c ON c.seq = d.seq GROUP BY d.destination"
)
_DEAD_BY_DESTINATION = "SELECT destination, count(*) FROM dead_letters GROUP BY destination"

encode_ids = msgspec.json.Encoder().encode
decode_ids = msgspec.json.Decoder(list[str]).decode


def connect(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with durable WAL settings."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    # The default 4 KiB pages: rows are small now that payloads live in segment files, and
    # 16 KiB pages (which helped while ~120 KB payloads were stored here) measured no better.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # NORMAL may lose commits already answered 200
    # The WAL is reset and overwritten in place after checkpoints rather than truncated:
    # an fsync that does not grow the file costs ~40 % less CPU. This caps what is kept.
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    return conn


def check_layout(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a database whose chunks table is not this version's."""
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(chunks)"))
    if columns != CHUNK_COLUMNS:
        raise StoreError(
            f"{path}: its chunks table has columns {', '.join(columns)}, this version expects"
            f" {', '.join(CHUNK_COLUMNS)} (small payloads inline, large ones in segment"
            " files beside the database);"
            " it was made by an older trackgate: deliver its backlog with that version, then"
            " remove the file"
        )


def json_list(values: Iterable) -> str:
    """A JSON array for `json_each(?)`: one prepared statement for any number of keys, or of
    rows (tuples, read as `value->>i`; numbers, text and nulls only). Text, not bytes:
    SQLite's JSON functions refuse BLOB arguments."""
    return msgspec.json.encode(list(values)).decode()


# A group commit's new rows, all inserted by one statement (see _DELETE_CHUNKS on steps):
# `INSERT INTO group_rows` with each table's rows as a JSON array of arrays (`json_list`).
# TEMP: created on the writer's connection when it opens, never stored in the database.
GROUP_ROWS_TRIGGER = """
CREATE TEMP VIEW IF NOT EXISTS group_rows (chunks, deliveries, seen_at, seen_ids, counters)
    AS SELECT NULL, NULL, NULL, NULL, NULL;
CREATE TEMP TRIGGER IF NOT EXISTS group_rows_insert INSTEAD OF INSERT ON group_rows BEGIN
    INSERT INTO chunks (seq, received_at, n_events, nbytes, segment, offset)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(NEW.chunks);
    INSERT INTO deliveries (destination, seq, attempts, next_attempt_at, last_error)
        SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM json_each(NEW.deliveries);
    INSERT INTO seen SELECT NEW.seen_at, NEW.seen_ids WHERE NEW.seen_ids IS NOT NULL;
    INSERT INTO counters (owner, name, value)
        SELECT value->>0, value->>1, value->>2 FROM json_each(NEW.counters) WHERE true
        ON CONFLICT (owner, name) DO UPDATE SET value = value + excluded.value;
END;
"""


_INSERT_GROUP_ROWS = "INSERT INTO group_rows VALUES (?,?,?,?,?)"


def chunk_body(payloads: Sequence[bytes]) -> bytes:
    """A chunk's payload: the events' own bytes as a JSON array, never re-encoded. One join
    copies them once (the brackets ride on the end payloads): `b"[" + joined + b"]"` copied
    a 120 KB batch three times."""
    if len(payloads) < 2:
        return b"[" + b"".join(payloads) + b"]"
    return b",".join([b"[" + payloads[0], *payloads[1:-1], payloads[-1] + b"]"])


def merge_arrays(bodies: Sequence[bytes]) -> bytes:
    """Non-empty JSON arrays as one: b"[a]", b"[b,c]" -> b"[a,b,c]"."""
    if len(bodies) == 1:
        return bodies[0]
    inner = [memoryview(body)[1:-1] for body in bodies[1:-1]]  # views: each byte copied once
    return b",".join([memoryview(bodies[0])[:-1], *inner, memoryview(bodies[-1])[1:]])


_decode_array = msgspec.json.Decoder(list[msgspec.Raw]).decode


def split_array(body: bytes) -> list[bytes]:
    """A chunk's JSON array back into its events' own bytes (chunk_body's inverse)."""
    return [bytes(item) for item in _decode_array(body)]


class GroupWrite:
    """One group commit in the making: inserts buffered per table (all in one statement at
    `flush`), the group's payloads of `inline_max_bytes` or more (one segment write at
    `flush`, before the rows that point at them; smaller ones go in their rows, so a group
    of small chunks never touches a segment), and the effects the store applies only once
    COMMIT has returned."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        segments: Segments,
        now: float,
        last_seq: int,
        inline_max_bytes: int,
        new_ids: list[str],
    ):
        self.conn = conn
        self.segments = segments
        self.now = now
        self.last_seq = last_seq  # highest chunk seq used so far
        self.inline_max_bytes = inline_max_bytes
        self._seq_base_read = False
        self._chunks: list[tuple] = []
        self._small: dict[tuple[str, ...], list] = {}  # destinations -> [arrays, bytes, events] to merge
        self._deliveries: list[tuple] = []
        self._bodies: list[bytes] = []  # payloads to write, new chunks' and relocated ones'
        self._tail: tuple[int, int] | None = None  # (segment, offset) of the first body
        self._tail_bytes = 0
        self._in_tail = 0  # chunks placed in the tail, new or relocated
        self._relocated: list[int] = []  # segments emptied by relocation
        self._dropped: dict[int, list[int]] = {}  # segment -> [chunks, bytes] no longer there
        self._not_ours: set[int] = set()  # segments another live process still appends to
        self.new_ids = new_ids  # dedupe ids accepted (and added to memory) for this group
        self.counts: Counter[tuple[str, str]] = Counter()
        self.bytes_delta = 0  # change in the chunks' total size
        self.woken: set[str] = set()  # destinations given work that is due now
        self.checkpoint = False  # truncate the WAL after COMMIT

    def add_new(self, destinations: tuple[str, ...], body: bytes, n_events: int) -> None:
        """The new events of one append, `body` their JSON array. Small appends of one
        commit that go to the same destinations share a chunk: a commit of N single-event
        calls writes one row, not N."""
        if len(body) >= self.inline_max_bytes:
            self.add_chunk(destinations, (), self.now, body=body, n_events=n_events)
            return
        pending = self._small.get(destinations)
        if pending is not None and (pending[1] + len(body) > MERGED_MAX_BYTES or pending[2] >= MERGED_MAX_EVENTS):
            self._add_merged(destinations, pending)
            pending = None
        if pending is None:
            pending = self._small[destinations] = [[], 0, 0]
        pending[0].append(body)
        pending[1] += len(body)
        pending[2] += n_events

    def _add_merged(self, destinations: tuple[str, ...], pending: list) -> None:
        bodies, _, n_events = pending
        body = merge_arrays(bodies)
        self.add_chunk(destinations, (), self.now, inline_below=MERGED_MAX_BYTES, body=body, n_events=n_events)

    def add_chunk(
        self,
        destinations: Iterable[str],
        payloads: Sequence[bytes],
        received_at: float,
        attempts: int = 0,
        due: float | None = None,
        error: str | None = None,
        inline_below: int | None = None,
        body: bytes | None = None,
        n_events: int | None = None,
    ) -> None:
        """A chunk of `payloads` (or of `body`, their array already made, with `n_events`)."""
        if body is None:
            body = chunk_body(payloads)
        seq = self._new_seq()
        place = self._place(body, inline_below or self.inline_max_bytes)
        n = len(payloads) if n_events is None else n_events
        self._chunks.append((seq, received_at, n, len(body), *place))
        due = self.now if due is None else due
        self._deliveries.extend((name, seq, attempts, due, error) for name in destinations)
        self.bytes_delta += len(body)

    def drop_unreferenced_chunks(self, seqs: Sequence[int]) -> None:
        """Compaction: delete the chunks among `seqs` that no destination still needs."""
        if not seqs:
            return
        conn = self.conn
        orphans = conn.execute(_ORPHANED_CHUNKS, (json_list(seqs),)).fetchall()
        for segment in {segment for _, _, segment in orphans} - {None}:
            if not self.segments.tracks(segment) and segment not in self._not_ours:
                # Counted before this transaction deletes any of its chunks.
                totals = lambda: conn.execute(_SEGMENT_TOTALS, (segment,)).fetchone()  # noqa: E731
                if not self.segments.adopt(segment, totals):
                    self._not_ours.add(segment)
        if orphans:
            conn.execute(_DELETE_CHUNKS, (json_list(seq for seq, _, _ in orphans),))
        for _, nbytes, segment in orphans:
            if segment is not None:
                self._drop(segment, nbytes)
        self.bytes_delta -= sum(nbytes for _, nbytes, _ in orphans)

    def flush(self) -> None:
        conn = self.conn
        for destinations, pending in self._small.items():
            self._add_merged(destinations, pending)
        self._small.clear()
        if self._bodies:
            # Durable before the rows that point at them commit: a crash in between leaves
            # orphan bytes, never a chunk without its payload.
            self.segments.write(self._tail, self._bodies)
        located = [row[:6] for row in self._chunks if row[6] is None]
        if len(located) < len(self._chunks):  # inline payloads are bytes, which JSON cannot hold
            conn.executemany(_INSERT_CHUNK, (row for row in self._chunks if row[6] is not None))
        counters = [(owner, name, n) for (owner, name), n in self.counts.items() if n]
        if located or self._deliveries or self.new_ids or counters:
            seen_ids = encode_ids(self.new_ids) if self.new_ids else None
            rows = (json_list(located), json_list(self._deliveries), self.now, seen_ids, json_list(counters))
            conn.execute(_INSERT_GROUP_ROWS, rows)

    def committed(self) -> None:
        """After COMMIT: the segments learn what this transaction added and deleted."""
        added = (self._in_tail, self._tail_bytes)
        self.segments.committed(added, self._dropped, self._relocated)

    def _place(self, body: bytes, inline_below: int) -> tuple[int | None, int | None, bytes | None]:
        """(segment, offset, payload) columns for `body`: (None, None, body) under
        `inline_below` bytes, else where it lands in the group's one segment write. The
        group's first such body may rotate the segment; the sparse old ones are then
        relocated behind it."""
        if len(body) < inline_below:
            return None, None, body
        if self._tail is None:
            self._tail = self.segments.tail()
            self._relocate(self.segments.take_sparse())
        segment, offset = self._tail
        self._bodies.append(body)
        self._tail_bytes += len(body)
        self._in_tail += 1
        return segment, offset + self._tail_bytes - len(body), None

    def _relocate(self, segments: list[int]) -> None:
        """Copy the live chunks of `segments` to the tail (or inline, by size) so their files
        can go. The rows move now, so a later op in this transaction that deletes one finds
        it where it is."""
        if not segments:
            return
        rows = self.conn.execute(_CHUNKS_IN_SEGMENTS, (json_list(segments),)).fetchall()
        payloads = self.segments.read(location for _, *location in rows)
        if None in payloads:
            return  # cannot happen to files counted here; leave them rather than fail appends
        moves = [(*self._place(payload, self.inline_max_bytes), row[0]) for row, payload in zip(rows, payloads)]
        self.conn.executemany(_MOVE_CHUNK, moves)
        for _, segment, _, nbytes in rows:
            self._drop(segment, nbytes)
        self._relocated += segments

    def _drop(self, segment: int, nbytes: int) -> None:
        dropped = self._dropped.setdefault(segment, [0, 0])
        dropped[0] += 1
        dropped[1] += nbytes

    def _new_seq(self) -> int:
        # Read under the write lock: the CLI may have added chunks (replay) since our last
        # commit. Never below our own last seq, so no seq is reused while this process runs.
        if not self._seq_base_read:
            (db_max,) = self.conn.execute("SELECT max(seq) FROM chunks").fetchone()
            self.last_seq = max(db_max or 0, self.last_seq)
            self._seq_base_read = True
        self.last_seq += 1
        return self.last_seq


def due_chunks(
    conn: sqlite3.Connection,
    segments: Segments,
    destination: str,
    now: float,
    max_events: int,
    skip: set[int],
) -> list[tuple[int, int, float, int, bytes]]:
    """(seq, attempts, received_at, n_events, payload) of due chunks not in `skip`, in seq
    order, until `max_events` events are gathered (at least one chunk when any is due)."""
    picked: list[tuple] = []  # the columns of _DUE_CHUNKS
    gathered = 0
    # Rows are stepped lazily: the scan stops as soon as enough are found.
    cursor = conn.execute(_DUE_CHUNKS, (destination, now, json_list(skip)))
    try:
        for row in cursor:
            picked.append(row)
            gathered += row[3]
            if gathered >= max_events:
                break
    finally:
        cursor.close()
    stored = iter(segments.read(row[4:7] for row in picked if row[7] is None))
    due = []
    for row in picked:
        payload = row[7] if row[7] is not None else next(stored)
        if payload is None:  # its segment file is gone since the rows were read
            moved = conn.execute(CHUNK_LOCATION, (row[0],)).fetchone()
            if moved is None:
                continue  # settled and deleted
            # relocated: to another segment, or inline
            [payload] = segments.read([moved[:3]]) if moved[3] is None else [moved[3]]
            if payload is None:
                path = segments.path(moved[0])
                raise StoreError(f"chunk {row[0]}: its segment file {path} is missing")
        due.append((*row[:4], payload))
    return due


def segment_in_use(conn: sqlite3.Connection, segment: int) -> bool:
    query = "SELECT 1 FROM chunks WHERE segment = ? LIMIT 1"  # a scan: at close only
    return conn.execute(query, (segment,)).fetchone() is not None


def read_stats(
    conn: sqlite3.Connection, now: float
) -> tuple[dict[str, DestinationStats], dict[str, int]]:
    """Per destination: pending, retrying, dead letters, oldest age, counters; and the
    `rejected` count per source."""
    destinations: dict[str, DestinationStats] = {}

    def of(name: str) -> DestinationStats:
        return destinations.setdefault(name, DestinationStats())

    for name, pending, retrying, oldest in conn.execute(_PENDING_BY_DESTINATION):
        stats = of(name)
        stats.pending, stats.retrying = pending, retrying
        stats.oldest_pending_age_s = max(0.0, now - oldest)
    for name, count in conn.execute(_DEAD_BY_DESTINATION):
        of(name).dead_letters = count
    rejected: dict[str, int] = {}
    for owner, name, value in conn.execute("SELECT owner, name, value FROM counters"):
        if name == REJECTED:
            rejected[owner] = value
        else:
            of(owner).counters[name] = value
    return destinations, rejected


def dead_letter_query(
    destination: str | None, filt: DeadLetterFilter
) -> tuple[str, list[object]]:
    """`WHERE … ORDER BY id [LIMIT ?]` selecting the dead letters `filt` names, and its params."""
    clauses: list[str] = []
    params: list[object] = []

    def where(clause: str, value: object) -> None:
        clauses.append(clause)
        params.append(value)

    if destination is not None:
        where("destination = ?", destination)
    if filt.ids:
        where("id IN (SELECT value FROM json_each(?))", json_list(filt.ids))
    if filt.message_ids:
        where("message_id IN (SELECT value FROM json_each(?))", json_list(filt.message_ids))
    if filt.reason is not None:
        where("reason = ?", filt.reason)
    if filt.since is not None:
        where("failed_at >= ?", filt.since)
    if filt.until is not None:
        where("failed_at < ?", filt.until)
    sql = f"WHERE {' AND '.join(clauses) or '1'} ORDER BY id"
    if filt.limit is not None:
        sql += " LIMIT ?"
        params.append(filt.limit)
    return sql, params
