"""Timers bucketed by timestamp (``runtime/timers.py``): order, deduplication and
deletion, for buckets built by ``add`` and by ``add_new``."""

from __future__ import annotations

from flowactors.runtime.timers import _TimerQueue


def test_timers_fire_by_timestamp_then_in_registration_order() -> None:
    q = _TimerQueue()
    q.add("b", 20)
    q.add_new("a", 10)
    q.add_new("c", 10)
    q.add("d", 10)
    assert len(q) == 4
    assert list(q.pop_due(15)) == [(10, "a"), (10, "c"), (10, "d")]
    assert list(q.pop_due(30)) == [(20, "b")]
    assert len(q) == 0


def test_add_deduplicates_also_after_add_new() -> None:
    q = _TimerQueue()
    q.add_new("a", 10)
    assert not q.add("a", 10)
    assert q.add("b", 10)
    assert sorted(q.live) == [(10, "a"), (10, "b")]
    assert len(q) == 2


def test_removing_from_a_list_bucket_and_while_its_bucket_fires() -> None:
    q = _TimerQueue()
    for key in "abc":
        q.add_new(key, 10)
    q.remove("b", 10)
    fired = []
    for _, key in q.pop_due(10):
        fired.append(key)
        if key == "a":
            q.remove("c", 10)  # deleted while its bucket fires: it does not fire
            q.add("d", 10)  # registered while firing, same time: fires after
    assert fired == ["a", "d"]
    assert len(q) == 0 and q.earliest() is None


def test_whole_buckets_for_the_window_path() -> None:
    q = _TimerQueue()
    q.add_new(("k1", "w"), 9)
    q.add_new(("k2", "w"), 9)
    q.add(("k1", "v"), 19)
    assert list(q.pop_due_buckets(9)) == [(9, [("k1", "w"), ("k2", "w")])]
    assert q.earliest() == 19 and len(q) == 1
