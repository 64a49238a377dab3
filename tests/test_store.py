"""Store conformance suite: every backend must pass it (parametrise the `open_store` fixture)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from contextlib import asynccontextmanager

import msgspec
import pytest

from gateway.store.base import (
    BackpressureError,
    DeadLetter,
    DeadLetterFilter,
    Events,
    Settlement,
    StoreError,
)
from gateway.store.sqlite import SqliteStore
from tests.appends import append
from gateway.store.sqlite_schema import GroupWrite


@pytest.fixture(params=["sqlite"])
def open_store(request, tmp_path):
    """`async with open_store(**options) as store:` opens a store on this test's database;
    opening it again later reopens the same data."""
    path = str(tmp_path / "data" / "store.db")  # "data/" does not exist yet

    @asynccontextmanager
    async def opener(**options):
        store = SqliteStore(path, **options)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    return opener


@asynccontextmanager
async def open_store_at(path: str, **options):
    store = SqliteStore(path, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def event(message_id: str) -> bytes:
    return msgspec.json.encode({"type": "track", "messageId": message_id, "event": "Viewed"})


def entry(message_id: str, *destinations: str) -> tuple[str, bytes, tuple[str, ...]]:
    return message_id, event(message_id), destinations


def joined(*message_ids: str) -> bytes:
    """The exact bytes of a chunk holding these events."""
    return b"[" + b",".join(event(m) for m in message_ids) + b"]"


def ids_of(chunks) -> list[str]:
    return [e["messageId"] for chunk in chunks for e in json.loads(chunk.payload)]


def dead(message_id: str, reason: str = "http_400", **fields) -> DeadLetter:
    return DeadLetter(message_id, event(message_id), reason, **fields)


async def dead_letter(store, destination: str, *message_ids: str, reason: str = "http_400"):
    """Append events for `destination` and dead-letter them all."""
    await append(store, [entry(m, destination) for m in message_ids])
    for chunk in await store.lease(destination, 1000):
        letters = tuple(dead(e["messageId"], reason) for e in json.loads(chunk.payload))
        await store.settle(destination, [Settlement(chunk.seq, delivered=0, dead=letters)])


# -- append and dedupe ----------------------------------------------------------------------


def test_appended_events_survive_reopen_and_stay_deduplicated(open_store):
    async def scenario():
        async with open_store() as store:
            assert await append(store, [entry("m1", "a"), entry("m2", "a")]) == [True, True]
        async with open_store() as store:
            [chunk] = await store.lease("a", 10)
            assert chunk.payload == joined("m1", "m2")
            assert (chunk.n_events, chunk.attempts, chunk.destination) == (2, 0, "a")
            assert await append(store, [entry("m1", "a")]) == [False]

    asyncio.run(scenario())


def test_duplicate_inside_one_call_is_stored_once(open_store):
    async def scenario():
        async with open_store() as store:
            results = await append(store, [entry("m1", "a"), entry("m1", "a"), entry("m2", "a")])
            assert results == [True, False, True]
            assert ids_of(await store.lease("a", 10)) == ["m1", "m2"]

    asyncio.run(scenario())


def test_a_big_call_with_some_duplicates_stores_exactly_the_new_events(open_store):
    """A call big enough to be admitted on the event loop, to two destination sets: only the
    new events' own bytes are stored, in order, with their count."""
    old = [f"m{i}" for i in range(0, 30, 3)]
    every = [f"m{i}" for i in range(30)]
    new = [m for m in every if m not in old]

    async def scenario():
        async with open_store() as store:
            assert await append(store, [entry(m, "a") for m in old]) == [True] * len(old)
            await store.settle("a", [Settlement(c.seq, c.n_events) for c in await store.lease("a", 100)])
            calls = [entry(m, "a") for m in every] + [entry("n1", "b"), entry("m3", "b")]
            results = await append(store, calls)
            assert results == [m not in old for m in every] + [True, False]
            [chunk_a] = await store.lease("a", 100)
            assert (chunk_a.payload, chunk_a.n_events) == (joined(*new), len(new))
            [chunk_b] = await store.lease("b", 100)
            assert (chunk_b.payload, chunk_b.n_events) == (joined("n1"), 1)

    asyncio.run(scenario())


def test_duplicate_across_calls_is_acknowledged_not_stored(open_store):
    async def scenario():
        async with open_store() as store:
            assert await append(store, [entry("m1", "a")]) == [True]
            assert await append(store, [entry("m1", "a"), entry("m2", "a")]) == [False, True]
            assert ids_of(await store.lease("a", 10)) == ["m1", "m2"]
            assert (await store.stats()).dedupe_ids == 2

    asyncio.run(scenario())


def test_dedupe_ids_expire_after_the_window(open_store):
    window_s = 0.5

    async def scenario():
        async with open_store(dedupe_window_s=window_s) as store:
            await append(store, [entry("m1", "a"), entry("m2", "a")])
            await asyncio.sleep(window_s + 0.1)
            await append(store, [entry("m3", "a")])
            await store.compact()
            assert (await store.stats()).dedupe_ids == 1  # m3 is still inside its window
            assert await append(store, [entry("m1", "a"), entry("m3", "a")]) == [True, False]
        await asyncio.sleep(window_s + 0.1)
        async with open_store(dedupe_window_s=window_s) as store:  # expired ids are not reloaded
            assert (await store.stats()).dedupe_ids == 0
            assert await append(store, [entry("m3", "a")]) == [True]

    asyncio.run(scenario())


def test_dedupe_memory_is_capped_keeping_the_newest_ids(open_store):
    async def scenario():
        async with open_store(dedupe_max_ids=10) as store:
            for n in range(25):
                await append(store, [entry(f"m{n}", "a")])
            assert (await store.stats()).dedupe_ids <= 10
            assert await append(store, [entry("m24", "a"), entry("m0", "a")]) == [False, True]
        async with open_store(dedupe_max_ids=10) as store:  # the cap holds on reload too
            assert (await store.stats()).dedupe_ids <= 10
            assert await append(store, [entry("m23", "a")]) == [False]

    asyncio.run(scenario())


def test_event_without_destinations_is_deduplicated_but_not_queued(open_store):
    async def scenario():
        async with open_store() as store:
            assert await append(store, [entry("m1")]) == [True]
            stats = await store.stats()
            assert (stats.destinations, stats.backlog_bytes, stats.dedupe_ids) == ({}, 0, 1)
        async with open_store() as store:
            assert await append(store, [entry("m1", "a")]) == [False]
            assert await store.lease("a", 10) == []

    asyncio.run(scenario())


def test_one_call_makes_one_chunk_per_destination_set(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a"), entry("m2", "a", "b"), entry("m3", "a")])
            chunks = await store.lease("a", 10)
            assert [c.payload for c in chunks] == [joined("m1", "m3"), joined("m2")]
            [chunk_b] = await store.lease("b", 10)
            assert chunk_b.seq == chunks[1].seq

    asyncio.run(scenario())


def test_concurrent_appends_are_durable_and_group_committed(open_store):
    async def scenario():
        async with open_store() as store:
            commits_before = store.commit_count
            calls = [append(store, [entry(f"m{i}", "a")]) for i in range(200)]
            assert await asyncio.gather(*calls) == [[True]] * 200
            assert store.commit_count - commits_before < 200
        async with open_store() as store:
            chunks = await store.lease("a", 1000)
            assert sorted(ids_of(chunks)) == sorted(f"m{i}" for i in range(200))

    asyncio.run(scenario())


def test_sqlite_small_calls_of_one_commit_share_a_chunk(tmp_path):
    """Single-event calls committed together write one chunk row, not one each (the
    single-event ingest path's cost); a merged chunk stays under MERGED_MAX_EVENTS."""
    from gateway.store.sqlite_schema import MERGED_MAX_EVENTS

    async def scenario():
        async with open_store_at(str(tmp_path / "s.db")) as store:
            n = MERGED_MAX_EVENTS + 100
            calls = [append(store, [entry(f"m{i}", "a")]) for i in range(n)]
            assert await asyncio.gather(*calls) == [[True]] * n
            assert store.commit_count <= 3  # the first call's commit, then the rest together
            chunks = await store.lease("a", 10 * n)
            assert sorted(ids_of(chunks)) == sorted(f"m{i}" for i in range(n))
            assert len(chunks) < n / 100 and max(c.n_events for c in chunks) <= MERGED_MAX_EVENTS

    asyncio.run(scenario())


def test_a_failing_call_does_not_fail_the_calls_sharing_its_commit(open_store):
    async def scenario():
        async with open_store() as store:
            broken = [Events(["m2"], None, ("a",))]  # type: ignore[arg-type]  # not bytes
            results = await asyncio.gather(
                append(store, [entry("m1", "a")]),
                store.append(broken),
                append(store, [entry("m3", "a")]),
                return_exceptions=True,
            )
            assert results[0] == [True] and results[2] == [True]
            assert isinstance(results[1], StoreError)
            assert await append(store, [entry("m2", "a")]) == [True]  # its id was not kept
            assert ids_of(await store.lease("a", 10)) == ["m1", "m3", "m2"]

    asyncio.run(scenario())


# -- lease, settle, release -----------------------------------------------------------------


def test_lease_is_in_order_and_gathers_up_to_max_events(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a"), entry("m2", "a")])
            await append(store, [entry("m3", "a"), entry("m4", "a"), entry("m5", "a")])
            await append(store, [entry("m6", "a"), entry("m7", "a")])
            first = await store.lease("a", 4)  # 2 + 3 events reach 4
            assert ids_of(first) == ["m1", "m2", "m3", "m4", "m5"]
            assert [c.n_events for c in first] == [2, 3]
            second = await store.lease("a", 1)  # always at least one chunk
            assert ids_of(second) == ["m6", "m7"]
            assert await store.lease("a", 100) == []

    asyncio.run(scenario())


def test_leased_chunks_are_exclusive_until_settled_or_released(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a")])
            await append(store, [entry("m2", "a")])
            [first] = await store.lease("a", 1)
            [second] = await store.lease("a", 1)
            assert await store.lease("a", 10) == []
            assert await store.next_due("a") is None  # everything is leased
            store.release("a", [first.seq])
            assert ids_of(await store.lease("a", 10)) == ["m1"]
            await store.settle("a", [Settlement(second.seq, delivered=1)])
            store.release("a", [first.seq])
            assert ids_of(await store.lease("a", 10)) == ["m1"]  # m2 is settled for good

    asyncio.run(scenario())


def test_chunk_is_deleted_once_every_destination_settled_it(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a", "b")])
            backlog = (await store.stats()).backlog_bytes
            assert backlog == len(joined("m1"))
            [chunk_a] = await store.lease("a", 10)
            await store.settle("a", [Settlement(chunk_a.seq, delivered=1)])
            assert (await store.stats()).backlog_bytes == backlog  # b still needs it
            [chunk_b] = await store.lease("b", 10)
            assert chunk_b.payload == joined("m1")
            await store.settle("b", [Settlement(chunk_b.seq, delivered=1)])
            assert (await store.stats()).backlog_bytes == 0
        async with open_store() as store:
            assert (await store.stats()).backlog_bytes == 0
            assert await store.lease("a", 10) == [] and await store.lease("b", 10) == []

    asyncio.run(scenario())


def test_partial_retry_becomes_a_new_chunk_for_that_destination_only(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry(m, "a", "b") for m in ("m1", "m2", "m3")])
            [chunk] = await store.lease("a", 10)
            retry_at = time.time() + 0.3
            settlement = Settlement(
                chunk.seq, delivered=2, retry=(event("m2"),), retry_at=retry_at, error="http_500"
            )
            await store.settle("a", [settlement])
            assert await store.lease("a", 10) == []  # not due yet
            assert await store.next_due("a") == pytest.approx(retry_at, abs=1e-3)
            stats = (await store.stats()).destinations
            assert (stats["a"].pending, stats["a"].retrying) == (1, 1)
            assert (stats["b"].pending, stats["b"].retrying) == (3, 0)
            [chunk_b] = await store.lease("b", 10)
            assert (chunk_b.seq, chunk_b.n_events, chunk_b.attempts) == (chunk.seq, 3, 0)
            await asyncio.sleep(retry_at - time.time() + 0.05)
            [retried] = await store.lease("a", 10)
            assert retried.seq != chunk.seq
            assert (retried.n_events, retried.attempts, retried.payload) == (1, 1, joined("m2"))
            assert retried.received_at == chunk.received_at  # max_age_s counts from receipt

    asyncio.run(scenario())


def test_partial_retry_keeps_the_exact_bytes_of_the_events_retried(open_store):
    odd = msgspec.json.encode({"messageId": "m2", "properties": {"é": "\u2028 ü"}})
    retried = (odd, event("m4"))  # the bytes as the worker passes them, never re-encoded

    async def scenario():
        async with open_store() as store:
            await append(store, [entry(m, "a") for m in ("m1", "m3", "m5")])
            [chunk] = await store.lease("a", 10)
            await store.settle("a", [Settlement(chunk.seq, 1, retried, time.time(), "http_500")])
            [again] = await store.lease("a", 10)
            assert again.payload == b"[" + b",".join(retried) + b"]"
            store.release("a", [again.seq])
        async with open_store() as store:
            [again] = await store.lease("a", 10)
            assert again.payload == b"[" + b",".join(retried) + b"]"

    asyncio.run(scenario())


def test_reopen_leases_the_same_bytes_in_the_same_order(open_store):
    calls = [[entry(f"m{i}-{k}", "a") for k in range(i % 3 + 1)] for i in range(30)]

    async def scenario():
        async with open_store() as store:
            for call in calls:
                await append(store, call)
            before = await store.lease("a", 1000)
            expected = [joined(*(message_id for message_id, _, _ in call)) for call in calls]
            assert [c.payload for c in before] == expected
        async with open_store() as store:
            after = await store.lease("a", 1000)
            assert [(c.seq, c.payload) for c in after] == [(c.seq, c.payload) for c in before]

    asyncio.run(scenario())


def test_retrying_a_whole_chunk_keeps_it_and_counts_the_attempt(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a"), entry("m2", "a")])
            [chunk] = await store.lease("a", 10)
            retry_at = time.time() + 0.2
            retry = (event("m1"), event("m2"))
            await store.settle("a", [Settlement(chunk.seq, 0, retry, retry_at, "timeout")])
            assert await store.lease("a", 10) == []
            await asyncio.sleep(retry_at - time.time() + 0.05)
            [again] = await store.lease("a", 10)
            assert (again.seq, again.attempts, again.payload) == (chunk.seq, 1, chunk.payload)
            await store.settle("a", [Settlement(again.seq, 0, retry, time.time(), "timeout")])
            [third] = await store.lease("a", 10)
            assert third.attempts == 2

    asyncio.run(scenario())


def test_dead_letters_keep_every_field(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a"), entry("m2", "a")])
            [chunk] = await store.lease("a", 10)
            letter = dead(
                "m1",
                "http_400",
                detail="bad field",
                attempts=3,
                last_request="POST http://x/batch {...}",
                last_response="400 {}",
            )
            before = time.time()
            await store.settle("a", [Settlement(chunk.seq, delivered=1, dead=(letter,))])
            [row] = await store.dead_letters("a")
            assert (row.destination, row.message_id, row.reason) == ("a", "m1", "http_400")
            assert (row.detail, row.attempts, row.payload) == ("bad field", 3, event("m1"))
            assert (row.last_request, row.last_response) == ("POST http://x/batch {...}", "400 {}")
            assert before <= row.failed_at <= time.time()
            assert await store.dead_letters(None) == [row]
            assert await store.dead_letters("b") == []
            assert (await store.stats()).backlog_bytes == 0  # the letter has its own copy

    asyncio.run(scenario())


# -- replay, purge, filters -----------------------------------------------------------------


def test_replay_resets_attempts_and_keeps_the_bytes(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a", "b"), entry("m2", "a", "b")])
            for destination in ("a", "b"):
                [chunk] = await store.lease(destination, 10)
                letters = (dead("m1", attempts=5), dead("m2", attempts=5))
                await store.settle(destination, [Settlement(chunk.seq, 0, dead=letters)])
            await store.wait_for_work("a", 0)  # consume the append's wake-up
            assert await store.replay("a") == 2
            await asyncio.wait_for(store.wait_for_work("a", 30), 5)  # replay wakes the worker
            [chunk] = await store.lease("a", 10)
            assert (chunk.payload, chunk.attempts) == (joined("m1", "m2"), 0)
            assert await store.dead_letters("a") == []
            assert len(await store.dead_letters("b")) == 2  # b is untouched
            assert await store.lease("b", 10) == []
            assert await store.replay("a") == 0

    asyncio.run(scenario())


def test_replay_by_another_process_is_seen_by_the_running_one(open_store):
    async def scenario():
        async with open_store() as gateway:
            await dead_letter(gateway, "a", "m1")
            async with open_store() as cli:
                assert await cli.replay("a") == 1
            await append(gateway, [entry("m2", "a")])  # its seq must not collide with the replay's
            assert ids_of(await gateway.lease("a", 10)) == ["m1", "m2"]

    asyncio.run(scenario())


def test_purge_deletes_only_what_the_filter_names(open_store):
    async def scenario():
        async with open_store() as store:
            await dead_letter(store, "a", "m1", "m2", reason="http_400")
            await dead_letter(store, "a", "m3", reason="retries_exhausted")
            await dead_letter(store, "b", "m4")
            assert await store.purge("a", DeadLetterFilter(reason="http_400")) == 2
            assert [r.message_id for r in await store.dead_letters("a")] == ["m3"]
            assert await store.purge("a") == 1
            assert [r.message_id for r in await store.dead_letters(None)] == ["m4"]

    asyncio.run(scenario())


def test_dead_letter_filters(open_store):
    async def scenario():
        async with open_store() as store:
            await dead_letter(store, "a", "m1", "m2", reason="http_400")
            middle = time.time()
            await dead_letter(store, "a", "m3", "m4", reason="http_413")
            await dead_letter(store, "b", "m5")
            rows = await store.dead_letters("a")

            async def ids(**filt) -> list[str]:
                found = await store.dead_letters("a", DeadLetterFilter(**filt))
                return [r.message_id for r in found]

            assert [r.message_id for r in rows] == ["m1", "m2", "m3", "m4"]
            assert await ids(ids=(rows[1].id, rows[3].id)) == ["m2", "m4"]
            assert await ids(message_ids=("m3", "m5")) == ["m3"]
            assert await ids(reason="http_413") == ["m3", "m4"]
            assert await ids(since=middle) == ["m3", "m4"]
            assert await ids(until=middle) == ["m1", "m2"]
            assert await ids(limit=3) == ["m1", "m2", "m3"]
            assert await ids(reason="http_400", limit=1) == ["m1"]
            assert await store.replay("a", DeadLetterFilter(message_ids=("m4",))) == 1
            assert ids_of(await store.lease("a", 10)) == ["m4"]

    asyncio.run(scenario())


# -- rejects, counters, stats, back-pressure ------------------------------------------------------


def test_rejects_are_listed_newest_first_truncated_and_bounded(open_store):
    async def scenario():
        async with open_store() as store:
            await store.record_rejects("web", [("invalid_json", "not JSON", b"x" * 5000)])
            await store.record_rejects("ios", [("missing_identifier", "no userId", b"{}")])
            [newest, oldest] = await store.rejects()
            assert (newest.source, newest.code) == ("ios", "missing_identifier")
            assert (newest.message, newest.payload) == ("no userId", b"{}")
            assert oldest.payload == b"x" * 4096
            assert [r.source for r in await store.rejects("web")] == ["web"]
            assert len(await store.rejects(limit=1)) == 1
            flood = [("too_large", f"#{i}", b"") for i in range(10_005)]
            await store.record_rejects("web", flood)
            kept = await store.rejects(limit=20_000)
            assert len(kept) == 10_000 and kept[0].message == "#10004"
            assert (await store.stats()).rejected == {"web": 10_006, "ios": 1}

    asyncio.run(scenario())


def test_counters_add_up_from_appends_and_settlements(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a")], {("a", "skipped_filter"): 2})
            await append(store, [], {("a", "skipped_filter"): 3, ("b", "skipped_disabled"): 1})
            [chunk] = await store.lease("a", 10)
            await store.settle("a", [Settlement(chunk.seq, delivered=1)])
            await append(store, [entry("m2", "a"), entry("m3", "a"), entry("m4", "a")])
            [chunk] = await store.lease("a", 10)
            retry = (event("m3"),)
            outcome = Settlement(chunk.seq, 1, retry, time.time() + 60, "http_503", (dead("m4"),))
            await store.settle("a", [outcome])
            stats = await store.stats()
            expected = {"skipped_filter": 5, "delivered": 2, "retried": 1, "dead": 1}
            assert stats.destinations["a"].counters == expected
            assert stats.destinations["b"].counters == {"skipped_disabled": 1}
        async with open_store() as store:
            assert (await store.stats()).destinations["a"].counters["delivered"] == 2

    asyncio.run(scenario())


def test_stats_report_pending_retrying_dead_and_age(open_store):
    async def scenario():
        async with open_store() as store:
            await append(store, [entry("m1", "a"), entry("m2", "a")])
            await append(store, [entry("m3", "a", "b")])
            await dead_letter(store, "c", "m5")
            await append(store, [entry("m4", "c")])
            [first, *_] = await store.lease("a", 1)
            retry = (event("m1"), event("m2"))
            await store.settle("a", [Settlement(first.seq, 0, retry, time.time() + 60, "x")])
            await asyncio.sleep(0.05)
            stats = await store.stats()
            a, b, c = (stats.destinations[name] for name in "abc")
            assert (a.pending, a.retrying, a.dead_letters) == (3, 2, 0)
            assert (b.pending, b.retrying) == (1, 0)
            assert (c.pending, c.dead_letters) == (1, 1)
            assert 0.05 <= a.oldest_pending_age_s < 10
            expected = len(joined("m1", "m2")) + len(joined("m3")) + len(joined("m4"))
            assert stats.backlog_bytes == expected
            assert stats.dedupe_ids == 5 and stats.max_backlog_bytes == 1 << 30

    asyncio.run(scenario())


def test_backlog_cap_refuses_appends_until_work_is_settled(open_store):
    async def scenario():
        async with open_store(max_backlog_bytes=100) as store:
            await append(store, [entry("m1", "a"), entry("m2", "a")])  # over 100 bytes now
            assert store.over_backlog
            with pytest.raises(BackpressureError) as refused:
                await append(store, [entry("m3", "a")])
            assert refused.value.retry_after_s > 0
            [chunk] = await store.lease("a", 10)
            await store.settle("a", [Settlement(chunk.seq, delivered=2)])
            assert not store.over_backlog
            assert await append(store, [entry("m3", "a")]) == [True]  # m3 was never stored

    asyncio.run(scenario())


# -- waiting, readiness, lifecycle ---------------------------------------------------------------


def test_next_due_reports_the_earliest_unleased_chunk(open_store):
    async def scenario():
        async with open_store() as store:
            assert await store.next_due("a") is None
            await append(store, [entry("m1", "a")])
            assert await store.next_due("a") <= time.time()
            [chunk] = await store.lease("a", 10)
            retry_at = time.time() + 30
            await store.settle("a", [Settlement(chunk.seq, 0, (event("m1"),), retry_at, "x")])
            assert await store.next_due("a") == pytest.approx(retry_at, abs=1e-3)

    asyncio.run(scenario())


def test_wait_for_work_wakes_on_append_and_times_out_otherwise(open_store):
    async def scenario():
        async with open_store() as store:
            waiter = asyncio.create_task(store.wait_for_work("a", 30))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            await append(store, [entry("m1", "b")])
            await asyncio.sleep(0.05)
            assert not waiter.done()  # work for b does not wake a
            await append(store, [entry("m2", "a")])
            await asyncio.wait_for(waiter, 5)
            await asyncio.wait_for(store.wait_for_work("a", 0.01), 5)  # nothing new: times out

    asyncio.run(scenario())


def test_ping_close_and_closed_store(open_store):
    async def scenario():
        async with open_store() as store:
            await store.ping()
            await store.close()  # closing twice is harmless
            with pytest.raises(StoreError):
                await append(store, [entry("m1", "a")])

    asyncio.run(scenario())


# -- SQLite specifics -----------------------------------------------------------------------------


def test_sqlite_failed_commit_keeps_nothing(tmp_path):
    path = str(tmp_path / "store.db")

    async def scenario():
        store = SqliteStore(path, busy_timeout_s=0.05)
        await store.open()
        try:
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreError):
                await append(store, [entry("m1", "a")])
            blocker.execute("ROLLBACK")
            blocker.close()
            assert await append(store, [entry("m1", "a")]) == [True]  # its id was not kept
        finally:
            await store.close()

    asyncio.run(scenario())


def open_segmented(path: str, **options):
    """A store that puts every chunk payload in a segment file, however small."""
    return open_store_at(path, inline_max_bytes=0, **options)


def segment_files(db_path) -> list[str]:
    return sorted(os.listdir(f"{db_path}.segments"))


def test_sqlite_segments_are_unlinked_once_every_chunk_in_them_is_settled(tmp_path):
    path = str(tmp_path / "store.db")

    async def scenario():
        async with open_segmented(path, segment_bytes=100) as store:
            for i in range(6):  # 52 bytes a chunk: two chunks fill a segment
                await append(store, [entry(f"m{i}", "a", "b")])
            files = segment_files(path)
            assert len(files) == 3
            chunks = await store.lease("a", 1)  # m0: segment 1 is still needed by b
            await store.settle("a", [Settlement(c.seq, 1) for c in chunks])
            assert segment_files(path) == files
            chunks = await store.lease("b", 2)  # m0, m1
            await store.settle("b", [Settlement(c.seq, 1) for c in chunks])
            assert segment_files(path) == files  # m1 is still pending for a
            chunks = await store.lease("a", 1)  # m1: segment 1 is empty now
            await store.settle("a", [Settlement(c.seq, 1) for c in chunks])
            assert segment_files(path) == files[1:]
            for destination in ("a", "b"):
                chunks = await store.lease(destination, 100)
                await store.settle(destination, [Settlement(c.seq, 1) for c in chunks])
            assert segment_files(path) == files[2:]  # the current one stays while open
            assert (await store.stats()).backlog_bytes == 0
        assert segment_files(path) == []  # closed without a chunk in it

    asyncio.run(scenario())


def test_sqlite_a_reopen_reads_every_segment_back_exactly(tmp_path):
    path = str(tmp_path / "store.db")

    async def scenario():
        async with open_segmented(path, segment_bytes=100) as store:
            for i in range(10):
                await append(store, [entry(f"m{i}", "a"), entry(f"n{i}", "b")])
            before = await store.lease("a", 100) + await store.lease("b", 100)
        assert len(segment_files(path)) == 10  # two 52-byte chunks fill a segment
        async with open_segmented(path, segment_bytes=100) as store:
            after = await store.lease("a", 100) + await store.lease("b", 100)
            assert [(c.seq, c.payload) for c in after] == [(c.seq, c.payload) for c in before]
            assert [c.payload for c in after[:2]] == [joined("m0"), joined("m1")]

    asyncio.run(scenario())


def test_sqlite_a_partial_retry_keeps_its_segment_alive(tmp_path):
    path = str(tmp_path / "store.db")

    async def scenario():
        async with open_segmented(path, segment_bytes=100) as store:
            await append(store, [entry("m1", "a"), entry("m2", "a")])
            [chunk] = await store.lease("a", 10)
            await store.settle("a", [Settlement(chunk.seq, 1, (event("m2"),), time.time(), "x")])
            assert len(segment_files(path)) == 1  # m1+m2 settled; m2 went to a new segment
            await append(store, [entry("m3", "a")])
        async with open_segmented(path, segment_bytes=100) as store:
            chunks = await store.lease("a", 10)
            assert [c.payload for c in chunks] == [joined("m2"), joined("m3")]
            await store.settle("a", [Settlement(c.seq, 1) for c in chunks])
            assert segment_files(path) == []

    asyncio.run(scenario())


def segment_bytes_on_disk(db_path) -> int:
    return sum(os.path.getsize(f"{db_path}.segments/{name}") for name in segment_files(db_path))


def test_sqlite_sparse_segments_are_rewritten_so_a_sliver_does_not_pin_the_disk(tmp_path):
    path = str(tmp_path / "store.db")
    slow = [f"k{i}" for i in range(0, 300, 20)]  # a paused destination gets every 20th event

    async def scenario():
        async with open_segmented(path, segment_bytes=1000) as store:  # ~19 chunks a file
            for i in range(300):
                await append(store, [entry(f"m{i}", "a")] + [entry(f"k{i}", "b")] * (i % 20 == 0))
                chunks = await store.lease("a", 10)  # "a" keeps up
                await store.settle("a", [Settlement(c.seq, c.n_events) for c in chunks])
                backlog = (await store.stats()).backlog_bytes
                # Without relocation every file would stay, each pinned by one "b" chunk.
                assert segment_bytes_on_disk(path) <= 4 * backlog + 2 * 1000
            assert ids_of(await store.lease("b", 100)) == slow
            assert (await store.stats()).backlog_bytes == sum(len(joined(k)) for k in slow)
        async with open_segmented(path, segment_bytes=1000) as store:
            chunks = await store.lease("b", 100)
            assert [c.payload for c in chunks] == [joined(k) for k in slow]
            await store.settle("b", [Settlement(c.seq, 1) for c in chunks])
            assert segment_files(path) == []

    asyncio.run(scenario())


def test_sqlite_orphan_segment_files_are_removed_at_open(tmp_path):
    path = str(tmp_path / "store.db")

    async def scenario():
        async with open_segmented(path) as store:
            await append(store, [entry("m1", "a")])
        [live] = segment_files(path)
        # What a crash between a payload's fdatasync and its COMMIT leaves behind.
        for name in ("000007.seg", "000008.seg"):
            (tmp_path / "store.db.segments" / name).write_bytes(b'[{"lost":1}]')
        (tmp_path / "store.db.segments" / "notes.txt").write_text("not ours")
        async with open_segmented(path) as store:
            assert segment_files(path) == [live, "notes.txt"]
            [chunk] = await store.lease("a", 10)
            assert chunk.payload == joined("m1")
            await append(store, [entry("m2", "a")])  # a new segment, never 7 or 8 again
            assert len(segment_files(path)) == 3 and "000009.seg" in segment_files(path)

    asyncio.run(scenario())


def test_sqlite_a_failed_commit_leaves_orphan_bytes_and_no_chunk(tmp_path, monkeypatch):
    path = str(tmp_path / "store.db")

    async def scenario():
        async with open_segmented(path) as store:
            await append(store, [entry("m1", "a")])
            flush = GroupWrite.flush

            def flush_then_fail(txn):
                flush(txn)  # the payload is written and synced, then the commit fails
                raise sqlite3.OperationalError("disk I/O error")

            monkeypatch.setattr(GroupWrite, "flush", flush_then_fail)
            with pytest.raises(StoreError):
                await append(store, [entry("m2", "a")])
            monkeypatch.setattr(GroupWrite, "flush", flush)
            assert await append(store, [entry("m3", "a")]) == [True]
            assert ids_of(await store.lease("a", 10)) == ["m1", "m3"]
        async with open_segmented(path) as store:
            assert ids_of(await store.lease("a", 10)) == ["m1", "m3"]
            assert (await store.stats()).backlog_bytes == len(joined("m1")) + len(joined("m3"))

    asyncio.run(scenario())


def test_sqlite_segments_of_another_process_are_unlinked_only_once_it_is_gone(tmp_path):
    path = str(tmp_path / "store.db")

    async def scenario():
        async with open_segmented(path) as gateway:
            await dead_letter(gateway, "a", "m1")
            await append(gateway, [entry("m2", "a")])
            async with open_segmented(path) as cli:  # replays into a segment of its own
                assert await cli.replay("a") == 1
                chunks = await gateway.lease("a", 10)
                assert ids_of(chunks) == ["m2", "m1"]
                await gateway.settle("a", [Settlement(c.seq, 1) for c in chunks])
                assert len(segment_files(path)) == 2  # the CLI's file: its owner is alive
            assert len(segment_files(path)) == 1  # the CLI removed it on close
            await append(gateway, [entry("m3", "a")])
        async with open_segmented(path) as gateway:
            assert ids_of(await gateway.lease("a", 10)) == ["m3"]

    asyncio.run(scenario())


def test_sqlite_a_group_of_more_chunks_than_one_gathering_write_takes(tmp_path):
    path = str(tmp_path / "store.db")
    n = 1500  # past IOV_MAX (1024) buffers in one group commit

    async def scenario():
        async with open_segmented(path) as store:
            calls = [append(store, [entry(f"m{i}", "a")]) for i in range(n)]
            assert await asyncio.gather(*calls) == [[True]] * n
            assert store.commit_count < n
        async with open_segmented(path) as store:
            chunks = await store.lease("a", 10 * n)
            assert sorted(c.payload for c in chunks) == sorted(joined(f"m{i}") for i in range(n))

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "columns",
    [
        "payload BLOB NOT NULL",  # payloads inside SQLite
        "segment INTEGER NOT NULL, offset INTEGER NOT NULL",  # every payload in a segment
    ],
)
def test_sqlite_a_database_of_an_older_layout_is_refused_clearly(tmp_path, columns):
    path = str(tmp_path / "store.db")
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE chunks (seq INTEGER PRIMARY KEY, received_at REAL NOT NULL,"
        f" n_events INTEGER NOT NULL, nbytes INTEGER NOT NULL, {columns})"
    )
    old.close()

    async def scenario():
        store = SqliteStore(path)
        with pytest.raises(StoreError, match="made by an older trackgate"):
            await store.open()
        await store.close()

    asyncio.run(scenario())


# Inline payloads: chunks under `inline_max_bytes` are kept in their row, larger ones in
# segment files. 100 bytes: one event (52 bytes) is inline, three (154) are not.
INLINE = {"inline_max_bytes": 100}


def chunk_rows(tmp_path) -> list[tuple]:
    """(seq, inline?) of every chunk row in the fixture's database."""
    with sqlite3.connect(tmp_path / "data" / "store.db") as conn:
        return conn.execute("SELECT seq, payload IS NOT NULL FROM chunks ORDER BY seq").fetchall()


def data_segments(tmp_path) -> list[str]:
    return sorted(os.listdir(tmp_path / "data" / "store.db.segments"))


def test_inline_and_segment_chunks_lease_the_exact_bytes_after_reopen(open_store, tmp_path):
    async def scenario():
        async with open_store(**INLINE) as store:
            await append(store, [entry("s1", "a")])
            await append(store, [entry(f"b{i}", "a") for i in range(3)])
            await append(store, [entry("s2", "a")])
            before = await store.lease("a", 100)
        assert [inline for _, inline in chunk_rows(tmp_path)] == [1, 0, 1]
        assert len(data_segments(tmp_path)) == 1
        async with open_store(**INLINE) as store:
            after = await store.lease("a", 100)
            assert [c.payload for c in after] == [c.payload for c in before]
            assert [c.payload for c in after] == [joined("s1"), joined("b0", "b1", "b2"),
                                                  joined("s2")]  # fmt: skip
            assert (await store.stats()).backlog_bytes == sum(len(c.payload) for c in after)

    asyncio.run(scenario())


def test_a_group_of_small_chunks_never_touches_a_segment(open_store, tmp_path, monkeypatch):
    synced: list[int] = []
    fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), fdatasync(fd))[1])

    async def scenario():
        async with open_store(**INLINE) as store:
            calls = [append(store, [entry(f"m{i}", "a", "b")]) for i in range(50)]
            assert await asyncio.gather(*calls) == [[True]] * 50
            await append(store, [entry("x", "a"), entry("y", "b")])  # two small chunks
            assert data_segments(tmp_path) == [] and synced == []
            chunks = await store.lease("a", 100)
            assert ids_of(chunks) == [f"m{i}" for i in range(50)] + ["x"]
        assert data_segments(tmp_path) == [] and synced == []

    asyncio.run(scenario())


def test_settling_inline_chunks_deletes_their_rows(open_store, tmp_path):
    async def scenario():
        async with open_store(**INLINE) as store:
            await append(store, [entry("m1", "a", "b"), entry("m2", "a", "b")])
            await append(store, [entry("m3", "a")])
            chunks = await store.lease("a", 100)
            await store.settle("a", [Settlement(c.seq, c.n_events) for c in chunks])
            assert len(chunk_rows(tmp_path)) == 1  # m1+m2, still pending for b
            [chunk] = await store.lease("b", 100)
            # A partial retry of a segment chunk is small enough to go inline.
            retry = Settlement(chunk.seq, 1, (event("m2"),), time.time(), "x")
            await store.settle("b", [retry])
            assert [inline for _, inline in chunk_rows(tmp_path)] == [1]
            [chunk] = await store.lease("b", 100)
            assert chunk.payload == joined("m2")
            await store.settle("b", [Settlement(chunk.seq, 1)])
            assert chunk_rows(tmp_path) == []
            assert (await store.stats()).backlog_bytes == 0

    asyncio.run(scenario())


def test_one_call_may_store_some_chunks_inline_and_others_in_a_segment(open_store, tmp_path):
    many = [f"b{i}" for i in range(3)]

    async def scenario():
        async with open_store(**INLINE) as store:
            entries = [entry(m, "b") for m in many] + [entry("a1", "a")]
            await append(store, entries)
            assert sorted(inline for _, inline in chunk_rows(tmp_path)) == [0, 1]
            assert len(data_segments(tmp_path)) == 1
            assert [c.payload for c in await store.lease("a", 10)] == [joined("a1")]
            [chunk] = await store.lease("b", 10)
            assert chunk.payload == joined(*many)
            await store.settle("b", [Settlement(chunk.seq, 3)])
        async with open_store(**INLINE) as store:
            assert [c.payload for c in await store.lease("a", 10)] == [joined("a1")]
            assert await store.lease("b", 10) == []

    asyncio.run(scenario())


def test_segment_reads_take_adjacent_chunks_in_one_read_and_return_each_exactly(tmp_path):
    """Runs of adjacent chunks are read with one pread and cut apart; gaps, other segments and
    single chunks still come back exactly, in the order asked."""
    from gateway.store.segments import Segments

    segments = Segments(str(tmp_path / "segs"), max_bytes=64)
    segments.open(dict)
    try:
        bodies = [b"[1]", b"[22]", b"[333]", b"[4444]"]
        first, offset = segments.tail()
        segments.write((first, offset), bodies)
        segments.committed((len(bodies), sum(map(len, bodies))), {})  # live chunks: kept at rotation
        places, at = [], offset
        for body in bodies:
            places.append((first, at, len(body)))
            at += len(body)
        segments.write(segments.tail(), [b"[5]" * 30])  # fills the segment
        second, start = segments.tail()  # a new one
        assert second != first
        segments.write((second, start), [b"[6]"])
        other = (second, start, 3)
        asked = [places[0], places[1], places[3], other, places[2]]
        assert segments.read(asked) == [b"[1]", b"[22]", b"[4444]", b"[6]", b"[333]"]
        assert segments.read(places) == bodies
    finally:
        segments.close(lambda segment: True)


def test_a_segment_leaves_the_page_cache_when_the_writer_moves_on(tmp_path, monkeypatch):
    """Rotation drops the full segment's pages (whole file, DONTNEED); the current one stays."""
    from gateway.store import segments as segments_module

    advised = []
    monkeypatch.setattr(segments_module.os, "posix_fadvise", lambda *args: advised.append(args))
    segments = segments_module.Segments(str(tmp_path / "segs"), max_bytes=64)
    segments.open(dict)
    try:
        first, offset = segments.tail()
        segments.write((first, offset), [b"[1]" * 30])
        segments.committed((1, 90), {})
        assert advised == []  # still the current segment
        fd = segments._files[first].fd
        second, _ = segments.tail()  # full: a new segment
        assert second != first
        assert advised == [(fd, 0, 0, os.POSIX_FADV_DONTNEED)]
        assert segments.read([(first, offset, 90)]) == [b"[1]" * 30]  # still readable
    finally:
        segments.close(lambda segment: True)
