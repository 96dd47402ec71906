"""The scale-out group's sticky assignor as a pure function (no broker)."""

from __future__ import annotations

import pytest
from flowactors_kafka._client import TopicPartition
from flowactors_kafka._scaleout._assignor import (
    Member,
    decode_owned,
    encode_owned,
    sticky_assignment,
)

TOPICS = frozenset({"app-in", "app-sum-repartition"})
#: Two stages of four tasks each, as in the keyed-sum job.
TASKS = [TopicPartition(t, p) for t in sorted(TOPICS) for p in range(4)]


def members(**owned: list[TopicPartition]) -> dict[str, Member]:
    return {m: Member(TOPICS, tuple(tps), generation=1) for m, tps in owned.items()}


def check_complete(
    result: dict[str, list[TopicPartition]], partitions: list[TopicPartition]
) -> None:
    every = [tp for tps in result.values() for tp in tps]
    assert sorted(every) == sorted(partitions)  # each exactly once
    assert len(every) == len(set(every))


def counts(result: dict[str, list[TopicPartition]]) -> list[int]:
    return sorted(len(tps) for tps in result.values())


def moved(before: dict[str, list[TopicPartition]], after: dict[str, list[TopicPartition]]) -> int:
    return sum(len(set(tps) - set(after.get(m, []))) for m, tps in before.items())


@pytest.mark.parametrize("n_members", [1, 2, 3, 5, 9])
def test_a_first_assignment_is_balanced_overall_and_per_stage(n_members: int) -> None:
    result = sticky_assignment(members(**{f"m{i}": [] for i in range(n_members)}), TASKS)
    check_complete(result, TASKS)
    sizes = counts(result)
    assert sizes[-1] - sizes[0] <= 1
    for topic in TOPICS:
        per_member = [sum(tp.topic == topic for tp in tps) for tps in result.values()]
        assert max(per_member) - min(per_member) <= 1, (topic, result)


def test_two_members_share_each_stage() -> None:
    result = sticky_assignment(members(a=[], b=[]), TASKS)
    assert result == {
        "a": [
            TopicPartition("app-in", 0),
            TopicPartition("app-in", 2),
            TopicPartition("app-sum-repartition", 0),
            TopicPartition("app-sum-repartition", 2),
        ],
        "b": [
            TopicPartition("app-in", 1),
            TopicPartition("app-in", 3),
            TopicPartition("app-sum-repartition", 1),
            TopicPartition("app-sum-repartition", 3),
        ],
    }


def test_a_join_moves_only_what_the_new_member_needs() -> None:
    before = sticky_assignment(members(a=[], b=[]), TASKS)
    after = sticky_assignment(members(a=before["a"], b=before["b"], c=[]), TASKS)
    check_complete(after, TASKS)
    assert counts(after) == [2, 3, 3]
    assert moved(before, after) == 2  # exactly the new member's share
    assert set(after["a"]) <= set(before["a"]) and set(after["b"]) <= set(before["b"])


def test_the_second_worker_joining_takes_half_of_each_stage() -> None:
    alone = sticky_assignment(members(a=[]), TASKS)
    assert alone["a"] == TASKS
    after = sticky_assignment(members(a=TASKS, b=[]), TASKS)
    assert counts(after) == [4, 4]
    assert set(after["a"]) < set(TASKS)
    for topic in TOPICS:
        assert sum(tp.topic == topic for tp in after["b"]) == 2


def test_a_leave_keeps_every_survivor_s_tasks() -> None:
    before = sticky_assignment(members(a=[], b=[], c=[]), TASKS)
    after = sticky_assignment(members(a=before["a"], c=before["c"]), TASKS)
    check_complete(after, TASKS)
    assert counts(after) == [4, 4]
    assert set(before["a"]) <= set(after["a"]) and set(before["c"]) <= set(after["c"])


def test_the_same_members_keep_the_same_tasks() -> None:
    before = sticky_assignment(members(a=[], b=[], c=[]), TASKS)
    again = sticky_assignment(members(**before), TASKS)
    assert again == before


def test_an_unbalanced_previous_assignment_is_rebalanced_with_few_moves() -> None:
    previous = {"a": TASKS[:7], "b": TASKS[7:]}
    after = sticky_assignment(members(**previous), TASKS)
    check_complete(after, TASKS)
    assert counts(after) == [4, 4]
    assert moved(previous, after) == 3
    assert set(after["a"]) <= set(previous["a"])


def test_a_partition_claimed_twice_goes_to_one_member() -> None:
    claimed = [TopicPartition("app-in", 0), TopicPartition("app-in", 1)]
    after = sticky_assignment(members(a=claimed, b=claimed), TASKS)
    check_complete(after, TASKS)
    assert counts(after) == [4, 4]
    assert set(claimed) <= set(after["a"])  # same generation: the first by member id


def test_a_claim_of_a_newer_generation_wins() -> None:
    # "a" missed a generation (a zombie, removed from the group: generation -1) and
    # still claims the tasks "b" has run since
    claimed = [TopicPartition("app-in", 0), TopicPartition("app-in", 1)]
    after = sticky_assignment(
        {"a": Member(TOPICS, tuple(claimed), -1), "b": Member(TOPICS, tuple(claimed), 7)},
        TASKS,
    )
    check_complete(after, TASKS)
    assert set(claimed) <= set(after["b"])


def test_vanished_partitions_and_unsubscribed_topics_are_not_assigned() -> None:
    gone = TopicPartition("deleted-topic", 0)
    parts = [*TASKS, TopicPartition("other", 0)]
    result = sticky_assignment(
        {"a": Member(TOPICS, (gone,)), "b": Member(TOPICS | {"other"}, ())}, parts
    )
    check_complete(result, parts)
    assert TopicPartition("other", 0) in result["b"]


def test_the_result_does_not_depend_on_input_order() -> None:
    previous = {"b": TASKS[:3], "a": TASKS[5:], "c": []}
    one = sticky_assignment(members(**previous), TASKS)
    other = sticky_assignment(
        {m: Member(TOPICS, tuple(reversed(previous[m])), 1) for m in ["c", "a", "b"]},
        list(reversed(TASKS)),
    )
    assert one == other


def test_many_members_and_partitions_stay_balanced_and_sticky() -> None:
    parts = [TopicPartition(f"t{t}", p) for t in range(3) for p in range(32)]
    state = sticky_assignment(members(**{f"m{i}": [] for i in range(7)}), parts)
    for change in ["join", "leave", "join", "join", "leave"]:
        ids = sorted(state)
        if change == "join":
            nxt = {**state, f"m{len(ids) + 10}": []}
        else:
            nxt = {m: tps for m, tps in state.items() if m != ids[len(ids) // 2]}
        after = sticky_assignment(
            {
                m: Member(frozenset(f"t{t}" for t in range(3)), tuple(tps), 1)
                for m, tps in nxt.items()
            },
            parts,
        )
        check_complete(after, parts)
        sizes = counts(after)
        assert sizes[-1] - sizes[0] <= 1
        # stickiness: a survivor loses at most what it had above the smaller quota
        base = len(parts) // len(after)
        for m in nxt:
            if m in state:
                assert len(set(state[m]) - set(after[m])) <= max(0, len(state[m]) - base)
        state = after


def test_user_data_round_trips_and_junk_is_ignored() -> None:
    owned = [TopicPartition("b", 1), TopicPartition("a", 0)]
    assert decode_owned(encode_owned(owned, 3)) == (tuple(sorted(owned)), 3)
    assert decode_owned(encode_owned([], -1)) == ((), -1)
    for junk in [b"", None, b"\x00\x01", b"[]", b'{"version": 99, "owned": []}']:
        assert decode_owned(junk) == ((), -1)
