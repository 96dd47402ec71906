"""The stage planner: where a job is cut for scale-out, and what the cuts are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowactors import InvalidGraphError
from flowactors import StreamExecutionEnvironment as Env
from flowactors.api.sources import CollectionSource
from flowactors.runtime.graph import build_plan
from flowactors.runtime.stages import StagePlan, describe, plan_stages
from flowactors.spi import Source, SourceReader, SourceReaderContext
from flowactors.state.keygroups import key_group_for, key_group_range
from flowactors.windows import TumblingEventTimeWindows


class TopicSource(Source[Any]):
    """Stands in for a source the backend can share (a Kafka source)."""

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        raise NotImplementedError


def stages_of(env: Env, application_id: str = "app") -> StagePlan:
    plan = build_plan(
        env._take_plan_inputs(), default_parallelism=env.get_parallelism(), chaining=True
    )
    return plan_stages(
        plan,
        application_id=application_id,
        max_parallelism=env.get_max_parallelism(),
        can_read=lambda source: isinstance(source, TopicSource),
    )


def test_a_stateless_job_is_one_stage() -> None:
    env = Env()
    env.from_source(TopicSource(), name="in").map(lambda x: x).filter(bool).print()
    sp = stages_of(env)
    assert len(sp.stages) == 1
    (stage,) = sp.stages
    assert stage.input_topic is None and stage.partitions is None
    assert stage.members[0].name == "in" and len(stage.members) == 4
    assert sp.internal_topics == {}


def test_key_by_cuts_into_a_repartition_topic_named_after_its_reader() -> None:
    env = Env(parallelism=4)
    (
        env.from_source(TopicSource(), name="in")
        .map(lambda x: x)
        .key_by(lambda x: x % 10)
        .reduce(lambda a, b: a + b)
        .uid("sum")
        .print()
    )
    sp = stages_of(env, "orders")
    assert [s.uid for s in sp.stages][1] == "sum"
    first, second = sp.stages
    assert second.input_topic == "orders-sum-repartition"
    assert second.partitions == 4
    assert sp.internal_topics == {"orders-sum-repartition": 4}
    assert [h.topic for h in first.hops_out] == ["orders-sum-repartition"]
    assert second.hops_in == first.hops_out
    assert sp.transactional_id(second, 3) == "orders-sum-3"
    assert "orders-sum-repartition" in describe(sp)


def test_partition_r_holds_a_contiguous_key_group_range() -> None:
    env = Env(parallelism=3, max_parallelism=16)
    env.from_source(TopicSource()).key_by(lambda x: x).reduce(max).uid("m").print()
    sp = stages_of(env)
    stage = sp.stage("m")
    (hop,) = stage.hops_in
    route = hop.router(sp.max_parallelism)
    keys = list(range(200))
    for key, partition in zip(keys, route(keys)):
        assert key_group_for(key, 16) in sp.key_groups(stage, partition)
        assert sp.key_groups(stage, partition) == key_group_range(16, 3, partition)
    covered = [g for r in range(3) for g in sp.key_groups(stage, r)]
    assert covered == list(range(16))


def test_partitions_never_exceed_max_parallelism() -> None:
    env = Env(parallelism=8, max_parallelism=4)
    env.from_source(TopicSource()).key_by(lambda x: x).reduce(max).uid("m").print()
    assert stages_of(env).stage("m").partitions == 4


def test_rebalance_cuts_and_spreads_round_robin() -> None:
    env = Env(parallelism=2)
    env.from_source(TopicSource()).rebalance().map(lambda x: x).uid("spread").print()
    sp = stages_of(env)
    (hop,) = sp.stage("spread").hops_in
    assert hop.key_selector is None
    assert sorted(hop.router(128)(list(range(6)))) == [0, 0, 0, 1, 1, 1]


def test_reinterpret_as_keyed_does_not_cut() -> None:
    env = Env(parallelism=2)
    env.from_source(TopicSource()).reinterpret_as_keyed(lambda x: x).reduce(max).print()
    assert len(stages_of(env).stages) == 1


def test_both_inputs_of_a_two_input_operator_share_one_topic() -> None:
    env = Env(parallelism=2)
    left = env.from_source(TopicSource(), name="left").key_by(lambda x: x)
    right = env.from_source(TopicSource(), name="right").key_by(lambda x: x)
    left.connect(right).map(lambda x: x, lambda y: y).uid("join").print()
    sp = stages_of(env, "a")
    join = sp.stage("join")
    assert {h.topic for h in join.hops_in} == {"a-join-repartition"}
    assert sorted(h.input_index for h in join.hops_in) == [0, 1]
    assert join.inputs == 2  # its records carry the input-index header
    assert len(sp.stages) == 3


def test_a_union_is_cut_into_one_topic() -> None:
    env = Env()
    a = env.from_source(TopicSource(), name="a")
    b = env.from_source(TopicSource(), name="b")
    a.union(b).map(lambda x: x).uid("both").print()
    sp = stages_of(env)
    assert {h.upstream.name for h in sp.stage("both").hops_in} == {"a", "b"}
    assert sp.stage("both").inputs == 1


def test_a_source_the_backend_cannot_share_is_named() -> None:
    env = Env()
    env.from_source(CollectionSource([1, 2]), name="numbers").print()
    with pytest.raises(InvalidGraphError, match="source 'numbers' cannot scale out"):
        stages_of(env)


def test_global_and_window_all_are_named() -> None:
    env = Env()
    env.from_source(TopicSource()).global_().map(lambda x: x).name("together").print()
    with pytest.raises(InvalidGraphError, match="'together' cannot scale out"):
        stages_of(env)
    env = Env()
    env.from_source(TopicSource()).window_all(TumblingEventTimeWindows.of(1000)).reduce(max).name(
        "all"
    ).print()
    with pytest.raises(InvalidGraphError, match=r"'all' cannot scale out.*window_all"):
        stages_of(env)


def test_a_sink_that_commits_on_checkpoints_is_named(tmp_path: Path) -> None:
    """write_text makes its files final when a checkpoint completes; a scaled-out job
    takes none, so its files would stay in progress forever: refused up front."""
    env = Env()
    env.from_source(TopicSource()).map(str).write_text(tmp_path / "out")
    with pytest.raises(
        InvalidGraphError, match=r"sink 'Text File Sink' cannot scale out.*KafkaSink"
    ):
        stages_of(env)
    env = Env()
    env.from_source(TopicSource()).map(str).print()  # at-least-once per task: allowed
    assert len(stages_of(env).stages) == 1


def test_application_id_must_be_a_topic_prefix() -> None:
    env = Env()
    env.from_source(TopicSource()).print()
    with pytest.raises(InvalidGraphError, match="application_id"):
        stages_of(env, "has space")
