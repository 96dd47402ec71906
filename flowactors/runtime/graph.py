"""The logical graph a program builds, and its translation into a physical plan.

A :class:`Transformation` is one logical operator with its inputs. The plan
gives every transformation a parallelism, resolves every edge's partitioning
(forward when parallelism matches, rebalance otherwise, unless the program
chose), and groups transformations into *chains*: a transformation joins its
upstream's chain when its only input is a forward edge between equal
parallelisms. With parallelism 1 on both ends every partitioning is forward in
effect (there is one receiver), so such edges chain too — including
``key_by``, whose keyed operator then computes keys itself.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowactors.errors import InvalidGraphError
from flowactors.runtime.operators import StreamOperator
from flowactors.runtime.writer import Partitioning, PartitionSpec

_ids = itertools.count(1)


@dataclass(eq=False)
class Transformation:
    """One logical operator. ``factory`` makes a fresh operator for each subtask."""

    name: str
    factory: Callable[[], StreamOperator]
    inputs: list[Input] = field(default_factory=list)
    parallelism: int | None = None
    #: Upper bound a source or sink imposes (1 for non-parallel ones).
    max_parallelism: int | None = None
    uid: str | None = None
    is_source: bool = False
    is_sink: bool = False
    id: int = field(default_factory=lambda: next(_ids))
    #: What a source or sink transformation wraps (read by the stage planner of scale-out).
    source: Any = None
    watermark_strategy: Any = None
    sink: Any = None

    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-").lower() or "operator"

    def __repr__(self) -> str:
        return f"Transformation({self.name!r}, id={self.id})"


@dataclass(frozen=True, eq=False)
class Input:
    """An edge into a transformation: whose output (main or a side tag), how partitioned."""

    upstream: Transformation
    partition: PartitionSpec | None = None
    tag: Any = None
    #: 0 for one-input operators; 0 or 1 for the two inputs of a connected stream.
    input_index: int = 0


@dataclass(frozen=True, eq=False)
class Edge:
    upstream: Transformation
    downstream: Transformation
    input: Input
    kind: Partitioning
    chained: bool


@dataclass(eq=False)
class Chain:
    head: Transformation
    members: list[Transformation]
    parallelism: int

    @property
    def name(self) -> str:
        return " -> ".join(t.name for t in self.members)


@dataclass(eq=False)
class Plan:
    """What the executor runs: transformations in topological order, edges and chains."""

    transformations: list[Transformation]
    parallelism: dict[Transformation, int]
    edges: list[Edge]
    chains: list[Chain]
    chain_of: dict[Transformation, Chain]
    #: The id of each operator's state in checkpoints: its ``uid``, or one derived
    #: from its place in the graph (the same for the same program in any process).
    uids: dict[Transformation, str]

    def consumers(self, upstream: Transformation) -> list[Edge]:
        return [e for e in self.edges if e.upstream is upstream]

    def inputs_of(self, downstream: Transformation) -> list[Edge]:
        return [e for e in self.edges if e.downstream is downstream]


def build_plan(sinks: list[Transformation], *, default_parallelism: int, chaining: bool) -> Plan:
    if not sinks:
        raise InvalidGraphError(
            "the job has no sinks: add one (print(), sink_to(...), write_text(...)) "
            "or use execute_and_collect()"
        )
    order = _topological(sinks)
    _check_uids(order)

    parallelism: dict[Transformation, int] = {}
    for t in order:
        p = t.parallelism if t.parallelism is not None else default_parallelism
        if t.max_parallelism is not None and p > t.max_parallelism:
            if t.parallelism is not None:
                raise InvalidGraphError(
                    f"{t.name!r} cannot run with parallelism {p}: it supports at most "
                    f"{t.max_parallelism}"
                )
            p = t.max_parallelism
        parallelism[t] = p

    edges: list[Edge] = []
    for t in order:
        for inp in t.inputs:
            up_p, down_p = parallelism[inp.upstream], parallelism[t]
            kind = (
                inp.partition.kind
                if inp.partition is not None
                else (Partitioning.FORWARD if up_p == down_p else Partitioning.REBALANCE)
            )
            if kind is Partitioning.FORWARD and up_p != down_p:
                raise InvalidGraphError(
                    f"forward edge {inp.upstream.name!r} -> {t.name!r} needs equal "
                    f"parallelism, got {up_p} and {down_p}"
                )
            same = up_p == down_p
            chained = (
                chaining
                and len(t.inputs) == 1
                and not t.is_source
                and same
                and (kind is Partitioning.FORWARD or down_p == 1)
            )
            edges.append(Edge(inp.upstream, t, inp, kind, chained))

    chains: list[Chain] = []
    chain_of: dict[Transformation, Chain] = {}
    for t in order:
        into = [e for e in edges if e.downstream is t]
        if len(into) == 1 and into[0].chained:
            chain = chain_of[into[0].upstream]
            chain.members.append(t)
        else:
            chain = Chain(t, [t], parallelism[t])
            chains.append(chain)
        chain_of[t] = chain
    return Plan(order, parallelism, edges, chains, chain_of, _uids(order))


def _topological(sinks: list[Transformation]) -> list[Transformation]:
    order: list[Transformation] = []
    state: dict[Transformation, int] = {}  # 1 visiting, 2 done

    def visit(t: Transformation) -> None:
        mark = state.get(t)
        if mark == 2:
            return
        if mark == 1:
            raise InvalidGraphError(f"the job graph has a cycle through {t.name!r}")
        state[t] = 1
        for inp in t.inputs:
            visit(inp.upstream)
        state[t] = 2
        order.append(t)

    for sink in sinks:
        visit(sink)
    return order


def _uids(order: list[Transformation]) -> dict[Transformation, str]:
    """Explicit uids, and for the rest ``<name>-<n>``: the n-th operator in a
    deterministic depth-first order of the job graph.

    Operators without an explicit uid keep their state across restarts of the
    same program; set ``uid()`` on stateful operators so that a changed
    program still finds its state.
    """
    uids: dict[Transformation, str] = {}
    taken = {t.uid for t in order if t.uid is not None}
    for index, t in enumerate(order):
        if t.uid is not None:
            uids[t] = t.uid
            continue
        candidate = f"{t.slug()}-{index}"
        while candidate in taken:
            candidate += "_"
        taken.add(candidate)
        uids[t] = candidate
    return uids


def _check_uids(order: list[Transformation]) -> None:
    seen: dict[str, Transformation] = {}
    for t in order:
        if t.uid is None:
            continue
        other = seen.get(t.uid)
        if other is not None:
            raise InvalidGraphError(
                f"uid {t.uid!r} is used by both {other.name!r} and {t.name!r}; uids must be unique"
            )
        seen[t.uid] = t
