"""Which worker runs which task: a sticky assignment, balanced by count.

aiokafka rebalances eagerly: at every rebalance each member gives up all its partitions
and the group leader assigns them anew. A task's state lives in the worker that ran it
(a suspended task keeps its plan and state), so the assignment should move as few tasks
as it can. :func:`sticky_assignment` is a pure function of the members (their
subscriptions and the tasks each owned before the rebalance, which every member sends
as the *user data* of its join request, see :func:`encode_owned`) and of the partitions:

1. every member keeps the partitions it owned that still exist and that it is
   subscribed to; a partition claimed by two members stays with the one whose claim
   is from the newer generation of the group (as in Kafka's ``StickyAssignor``: a
   member that missed a generation, a zombie, claims what it held before), then the
   first by member id;
2. members get quotas: ``n // m`` partitions, and ``n % m`` of them one more — those
   that keep the most, so that as few partitions as possible move; a member that keeps
   more than its quota gives up the surplus, spread over topics (it keeps partitions of
   every stage rather than all of one);
3. the partitions left over go, in order, to the member furthest below its quota
   (then the one with the fewest partitions of that topic, then by member id).

The result is the same for the same input, whatever order it comes in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flowactors_kafka._client import TopicPartition

#: Version of the user data a member sends (its owned tasks).
_USER_DATA_VERSION = 1


@dataclass(frozen=True)
class Member:
    """A member of the group as the assignor sees it."""

    subscription: frozenset[str]
    #: The partitions it owned before this rebalance (its suspended tasks).
    owned: tuple[TopicPartition, ...] = ()
    #: The group generation it owned them in (-1: none, e.g. after it was removed).
    generation: int = -1


def encode_owned(owned: Iterable[TopicPartition], generation: int) -> bytes:
    """A member's user data: the partitions it owns, and the generation it owned them in."""
    pairs = sorted((tp.topic, tp.partition) for tp in owned)
    return json.dumps(
        {"version": _USER_DATA_VERSION, "generation": generation, "owned": pairs}
    ).encode()


def decode_owned(user_data: bytes | None) -> tuple[tuple[TopicPartition, ...], int]:
    """The partitions in a member's user data and their generation; none (generation
    -1) when it sent none or another format (such a member gets no stickiness)."""
    if not user_data:
        return (), -1
    try:
        decoded = json.loads(user_data)
        if decoded.get("version") != _USER_DATA_VERSION:
            return (), -1
        owned = tuple(TopicPartition(str(t), int(p)) for t, p in decoded["owned"])
        return owned, int(decoded["generation"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return (), -1


def sticky_assignment(
    members: Mapping[str, Member], partitions: Iterable[TopicPartition]
) -> dict[str, list[TopicPartition]]:
    """Member id -> its partitions (sorted); every partition to exactly one member
    subscribed to its topic."""
    everything = sorted(set(partitions))
    ids = sorted(members)
    assigned: dict[str, list[TopicPartition]] = {m: [] for m in ids}
    if not ids:
        return assigned
    # 1. what each member owned and may keep
    existing = set(everything)
    claimed: set[TopicPartition] = set()
    kept: dict[str, list[TopicPartition]] = {m: [] for m in ids}
    for m in sorted(ids, key=lambda m: (-members[m].generation, m)):
        for tp in sorted(set(members[m].owned)):
            if tp in existing and tp not in claimed and tp.topic in members[m].subscription:
                claimed.add(tp)
                kept[m].append(tp)
    # 2. quotas: the members keeping the most get the larger ones
    base, larger = divmod(len(everything), len(ids))
    by_kept = sorted(ids, key=lambda m: (-len(kept[m]), m))
    quota = {m: base + (1 if i < larger else 0) for i, m in enumerate(by_kept)}
    for m in ids:
        assigned[m] = _spread_over_topics(kept[m])[: quota[m]]
    # 3. the rest to whoever is furthest below quota
    taken = {tp for tps in assigned.values() for tp in tps}
    per_topic = {m: Counter(tp.topic for tp in assigned[m]) for m in ids}
    for tp in everything:
        if tp in taken:
            continue
        eligible = [m for m in ids if tp.topic in members[m].subscription]
        if not eligible:
            continue  # nobody reads this topic: nothing to run it
        chosen = min(
            eligible, key=lambda m: (len(assigned[m]) - quota[m], per_topic[m][tp.topic], m)
        )
        assigned[chosen].append(tp)
        per_topic[chosen][tp.topic] += 1
    return {m: sorted(tps) for m, tps in assigned.items()}


def _spread_over_topics(tps: list[TopicPartition]) -> list[TopicPartition]:
    """``tps`` ordered so that any prefix has about as many partitions of each topic:
    the first of every topic, then the second of every topic, and so on."""
    rank: Counter[str] = Counter()
    keyed = []
    for tp in sorted(tps):
        keyed.append((rank[tp.topic], tp))
        rank[tp.topic] += 1
    return [tp for _, tp in sorted(keyed)]
