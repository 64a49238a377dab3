"""The in-memory dedupe ids: admission, repeats within one call, undo, expiry and the cap."""

from __future__ import annotations

from gateway.store.dedupe import SeenIds


def admit(seen: SeenIds, ids: list[str], now: float, new_ids: list[str] | None = None) -> list[bool]:
    """Whether each id was new (admit answers None for "all of them")."""
    accepted = seen.admit(ids, now, [] if new_ids is None else new_ids)
    return [True] * len(ids) if accepted is None else accepted


def test_new_ids_are_admitted_and_seen_ones_refused() -> None:
    seen, new_ids = SeenIds(100), []
    assert seen.admit(["a", "b"], 1.0, new_ids) is None  # all new: the fast answer
    assert seen.admit(["b", "c"], 2.0, new_ids) == [False, True]
    assert new_ids == ["a", "b", "c"] and len(seen) == 3


def test_an_id_repeated_within_one_call_is_admitted_once() -> None:
    seen, new_ids = SeenIds(100), []
    assert seen.admit(["a", "b", "a"], 1.0, new_ids) == [True, True, False]
    assert new_ids == ["a", "b"] and len(seen) == 2


def test_forget_undoes_a_failed_commit_and_the_ids_can_come_again() -> None:
    seen = SeenIds(100)
    admit(seen, ["old"], 1.0)
    failed: list[str] = []
    admit(seen, ["x", "y"], 2.0, failed)
    admit(seen, ["z"], 2.0, failed)
    seen.forget(failed)
    assert len(seen) == 1
    assert admit(seen, ["x", "z", "old"], 3.0) == [True, True, False]
    seen.expire(2.5)  # only "old" was seen before 2.5; the retried ids stay
    assert len(seen) == 2 and admit(seen, ["old", "x"], 4.0) == [True, False]


def test_ids_expire_oldest_first_at_the_cutoff() -> None:
    seen = SeenIds(100)
    seen.load(["a", "b"], 10.0)
    admit(seen, ["c"], 20.0)
    seen.expire(15.0)
    assert len(seen) == 1
    assert admit(seen, ["a", "c"], 30.0) == [True, False]


def test_past_the_cap_the_oldest_ids_go_first() -> None:
    seen = SeenIds(10)
    for n in range(25):
        admit(seen, [f"m{n}"], float(n))
    assert len(seen) <= 10
    assert admit(seen, ["m24", "m0"], 99.0) == [False, True]
