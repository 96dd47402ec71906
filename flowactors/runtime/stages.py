"""Stages: a job cut at its re-partitioning edges, for running it on several workers.

In scale-out mode (``env.enable_scale_out``) a job runs on every replica of a
service; Kafka carries the data between them. The plan is cut at every edge
that moves records between subtasks by something other than "the same one":

- a ``key_by`` (hash) edge, unless the stream was keyed with
  ``reinterpret_as_keyed`` (its input already follows the key);
- a ``rebalance`` edge;
- every input of an operator with more than one input (a union, or the two
  inputs of a connected stream).

Each cut edge writes into an internal topic ``<application_id>-<uid>-repartition``
named after the operator that reads it; all inputs of one operator share that
topic, told apart by an input-index header, so co-partitioning of two topics
never matters. A :class:`Stage` is what lies between cuts: a tree of operators
headed by a source or by the reader of one internal topic. Inside a stage every
edge is forward, so one task of a stage is one chain in one actor.

Invariants:

- An internal topic has ``R`` partitions, ``1 <= R <= max_parallelism``, and
  partition ``r`` holds the contiguous key-group range
  ``key_group_range(max_parallelism, R, r)``: a record's partition is the
  subtask its key would have at parallelism ``R``. State layout, routing and
  snapshots per key group carry over unchanged. ``R`` is the parallelism of
  the operator that reads the topic (its own, or the environment's default).
- Stage names, topic names and transactional ids depend only on the program
  (operator uids) and the ``application_id``, so every worker computes the same.
- Jobs that cannot run on several workers fail here, before anything starts,
  with an :class:`~flowactors.errors.InvalidGraphError` naming the operator:
  a source the scale-out backend cannot read, ``global_()`` and ``window_all``
  (all records in one place), ``broadcast()`` (not built yet), a sink whose output
  becomes final only when a checkpoint completes (``write_text``).

Everything here is pure: no I/O, no event loop.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowactors.errors import InvalidGraphError
from flowactors.runtime.graph import Input, Plan, Transformation
from flowactors.runtime.writer import Partitioning
from flowactors.state.keygroups import KeyRouter, key_group_range

_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def _topic_safe(name: str) -> str:
    return _TOPIC_CHARS.sub("-", name).strip("-") or "operator"


@dataclass(frozen=True, eq=False)
class Hop:
    """One cut edge: records of ``upstream`` go through ``topic`` to ``downstream``."""

    upstream: Transformation
    downstream: Transformation
    input: Input
    topic: str
    partitions: int
    #: The input of ``downstream`` it feeds (0, or 1 for a connected stream's second).
    input_index: int
    #: The key of a hash edge; ``None``: spread round-robin (rebalance, union inputs).
    key_selector: Callable[[Any], Any] | None

    def router(self, max_parallelism: int) -> Callable[[list[Any]], list[int]]:
        """A function from a batch of records to their partitions of :attr:`topic`.

        Keyed: the partition owning the key's key group. Otherwise round-robin,
        starting anywhere (each sender spreads evenly on its own).
        """
        selector = self.key_selector
        if selector is None:
            counter = itertools.count()
            n = self.partitions

            def round_robin(values: list[Any]) -> list[int]:
                start = next(counter)
                return [(start + i) % n for i in range(len(values))]

            return round_robin
        router = KeyRouter(max_parallelism, self.partitions)
        route = router.route

        def keyed(values: list[Any]) -> list[int]:
            return route(list(map(selector, values)))

        return keyed


@dataclass(eq=False)
class Stage:
    """Operators between cuts: ``head`` and everything reached from it by forward edges."""

    uid: str
    head: Transformation
    #: In topological order, ``head`` first.
    members: list[Transformation]
    #: The internal topic the stage reads; ``None`` when a user source heads it.
    input_topic: str | None
    #: Tasks of the stage: the partitions of ``input_topic``; ``None`` for a source
    #: stage (the partitions of the user's topics, known only to the backend).
    partitions: int | None
    #: Cut edges into this stage (all of ``input_topic``) and out of it.
    hops_in: list[Hop] = field(default_factory=list)
    hops_out: list[Hop] = field(default_factory=list)

    @property
    def keyed(self) -> bool:
        """Whether operators of the stage keep keyed state (one of them is keyed)."""
        return any(
            inp.partition is not None and inp.partition.kind is Partitioning.HASH
            for t in self.members
            for inp in t.inputs
        ) or any(h.key_selector is not None for h in self.hops_in)

    @property
    def inputs(self) -> int:
        """How many inputs the head reads from :attr:`input_topic` (2: a two-input
        operator, its records told apart by :data:`flowactors.spi.INPUT_INDEX_HEADER`)."""
        return 1 + max((h.input_index for h in self.hops_in), default=0)

    @property
    def source(self) -> Any:
        """The user's source object heading the stage (``None`` for an internal topic)."""
        return self.head.source if self.head.is_source else None


@dataclass(eq=False)
class StagePlan:
    """The stages of a job, with its internal topics, for one ``application_id``."""

    application_id: str
    max_parallelism: int
    stages: list[Stage]
    plan: Plan

    @property
    def hops(self) -> list[Hop]:
        return [h for s in self.stages for h in s.hops_out]

    @property
    def internal_topics(self) -> dict[str, int]:
        """Every internal topic and its partition count."""
        topics: dict[str, int] = {}
        for s in self.stages:
            if s.input_topic is not None and s.partitions is not None:
                topics[s.input_topic] = s.partitions
        return topics

    def stage(self, uid: str) -> Stage:
        for s in self.stages:
            if s.uid == uid:
                return s
        raise KeyError(uid)

    def stage_of(self, t: Transformation) -> Stage:
        for s in self.stages:
            if t in s.members:
                return s
        raise KeyError(t)

    def changelog_topic(self, stage: Stage) -> str | None:
        """The compacted topic of a keyed stage's state, one partition per task."""
        if not stage.keyed:
            return None
        return f"{self.application_id}-{stage.uid}-changelog"

    def transactional_id(self, stage: Stage | str, partition: int) -> str:
        """The id of the one transactional producer of task (``stage``, ``partition``)."""
        uid = stage if isinstance(stage, str) else stage.uid
        return f"{self.application_id}-{uid}-{partition}"

    def key_groups(self, stage: Stage, partition: int) -> range:
        """The key groups task (``stage``, ``partition``) owns (a keyed stage after a hop)."""
        assert stage.partitions is not None, "a source stage's partitions follow its topics"
        return key_group_range(self.max_parallelism, stage.partitions, partition)


def _edge_kind(inp: Input) -> Partitioning:
    return Partitioning.FORWARD if inp.partition is None else inp.partition.kind


def _cuts(t: Transformation, inp: Input) -> bool:
    if len(t.inputs) > 1:
        return True
    spec = inp.partition
    if spec is None:
        return False
    if spec.kind is Partitioning.HASH:
        return not spec.reinterpreted
    return spec.kind is Partitioning.REBALANCE


def plan_stages(
    plan: Plan,
    *,
    application_id: str,
    max_parallelism: int,
    can_read: Callable[[Any], bool],
    backend_name: str = "the scale-out backend",
) -> StagePlan:
    """Cut ``plan`` into stages (see the module docstring).

    ``can_read(source)`` says whether the scale-out backend can share the
    source's input among workers (a Kafka source, for the Kafka backend).
    """
    if not application_id or _topic_safe(application_id) != application_id:
        raise InvalidGraphError(
            f"application_id must be non-empty and use only letters, digits, '.', '_' and '-' "
            f"(it prefixes Kafka topic names and transactional ids), got {application_id!r}"
        )
    for t in plan.transformations:
        for inp in t.inputs:
            kind = _edge_kind(inp)
            if kind is Partitioning.GLOBAL:
                raise InvalidGraphError(
                    f"{t.name!r} cannot scale out: it needs every record in one place "
                    "(global() or window_all); key the stream (key_by) instead, "
                    "or run the job without enable_scale_out"
                )
            if kind is Partitioning.BROADCAST:
                raise InvalidGraphError(
                    f"{t.name!r} cannot scale out: broadcast() inputs across workers are not "
                    "supported yet"
                )
        if t.is_sink and getattr(t.sink, "commits_on_checkpoints", False):
            raise InvalidGraphError(
                f"sink {t.name!r} cannot scale out: its output becomes final when a "
                "checkpoint completes, and a scaled-out job takes no checkpoints (its tasks "
                "commit Kafka transactions); write to Kafka (KafkaSink) instead, or run the "
                "job without enable_scale_out"
            )
        if t.is_source and not can_read(t.source):
            raise InvalidGraphError(
                f"source {t.name!r} cannot scale out: {backend_name} shares only its own "
                f"sources among workers (got {type(t.source).__name__}); read the input "
                "from Kafka, or run the job without enable_scale_out"
            )

    uids = plan.uids
    stages: list[Stage] = []
    stage_of: dict[Transformation, Stage] = {}
    for t in plan.transformations:  # topological: upstreams first
        if t.is_source or any(_cuts(t, inp) for inp in t.inputs):
            uid = _topic_safe(uids[t])
            if t.is_source:
                stage = Stage(uid, t, [t], None, None)
            else:
                r = min(plan.parallelism[t], max_parallelism)
                stage = Stage(uid, t, [t], f"{application_id}-{uid}-repartition", r)
            stages.append(stage)
        else:
            stage = stage_of[t.inputs[0].upstream]
            stage.members.append(t)
        stage_of[t] = stage

    for t in plan.transformations:
        stage = stage_of[t]
        if t is not stage.head or stage.input_topic is None:
            continue
        assert stage.partitions is not None
        for inp in t.inputs:
            spec = inp.partition
            keyed = spec is not None and spec.kind is Partitioning.HASH
            hop = Hop(
                inp.upstream,
                t,
                inp,
                stage.input_topic,
                stage.partitions,
                inp.input_index,
                spec.key_selector if keyed and spec is not None else None,
            )
            stage.hops_in.append(hop)
            stage_of[inp.upstream].hops_out.append(hop)
    return StagePlan(application_id, max_parallelism, stages, plan)


def describe(stage_plan: StagePlan) -> str:
    """A readable outline of the stages (for logs and docs)."""
    lines = []
    for s in stage_plan.stages:
        reads = s.input_topic or f"source {s.head.name!r}"
        ops = " -> ".join(t.name for t in s.members)
        writes = ", ".join(sorted({h.topic for h in s.hops_out})) or "-"
        parts = "source partitions" if s.partitions is None else s.partitions
        lines.append(f"{s.uid} [{parts}]: {reads} | {ops} | writes {writes}")
    return "\n".join(lines)
