"""The in-memory dedupe ids: admission, repeats within one call, undo, expiry and the cap."""

from __future__ import annotations

from gateway.store.base import Entry
from gateway.store.dedupe import SeenIds


def entries(*ids: str) -> list[Entry]:
    return [Entry(message_id, b"{}", ("d",)) for message_id in ids]


def test_new_ids_are_admitted_and_seen_ones_refused() -> None:
    seen, new_ids = SeenIds(100), []
    fresh, accepted = seen.admit(entries("a", "b"), 1.0, new_ids)
    assert accepted == [True, True] and [e.message_id for e in fresh] == ["a", "b"]
    fresh, accepted = seen.admit(entries("b", "c"), 2.0, new_ids)
    assert accepted == [False, True] and [e.message_id for e in fresh] == ["c"]
    assert new_ids == ["a", "b", "c"] and len(seen) == 3


def test_an_id_repeated_within_one_call_is_admitted_once() -> None:
    seen, new_ids = SeenIds(100), []
    fresh, accepted = seen.admit(entries("a", "b", "a"), 1.0, new_ids)
    assert accepted == [True, True, False]
    assert [e.message_id for e in fresh] == ["a", "b"] and new_ids == ["a", "b"] and len(seen) == 2


def test_forget_undoes_a_failed_commit_and_the_ids_can_come_again() -> None:
    seen = SeenIds(100)
    seen.admit(entries("old"), 1.0, [])
    failed: list[str] = []
    seen.admit(entries("x", "y"), 2.0, failed)
    seen.admit(entries("z"), 2.0, failed)
    seen.forget(failed)
    assert len(seen) == 1
    assert seen.admit(entries("x", "z", "old"), 3.0, [])[1] == [True, True, False]
    seen.expire(2.5)  # only "old" was seen before 2.5; the retried ids stay
    assert len(seen) == 2 and seen.admit(entries("old", "x"), 4.0, [])[1] == [True, False]


def test_ids_expire_oldest_first_at_the_cutoff() -> None:
    seen = SeenIds(100)
    seen.load(["a", "b"], 10.0)
    seen.admit(entries("c"), 20.0, [])
    seen.expire(15.0)
    assert len(seen) == 1
    assert seen.admit(entries("a", "c"), 30.0, [])[1] == [True, False]


def test_past_the_cap_the_oldest_ids_go_first() -> None:
    seen = SeenIds(10)
    for n in range(25):
        seen.admit(entries(f"m{n}"), float(n), [])
    assert len(seen) <= 10
    assert seen.admit(entries("m24", "m0"), 99.0, [])[1] == [False, True]
