"""The interval join's late-data side outputs, wired through a whole job."""

from __future__ import annotations

from typing import Any

import pytest

from flowactors import OutputTag, ProcessJoinFunction, StreamExecutionEnvironment, WatermarkStrategy

Click = tuple[str, int]


class Pair(ProcessJoinFunction[Click, Click, Any]):
    def process_element(self, left: Click, right: Click, ctx: Any, out: Any) -> None:
        out.collect(("pair", left[1], right[1]))


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_side_outputs_of_a_join_without_late_data_are_empty(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.get_config().set_auto_watermark_interval(0)  # watermarks only at the end of input
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda e, ts: e[1]
    )
    left_late: OutputTag[Click] = OutputTag("left-late")
    right_late: OutputTag[Click] = OutputTag("right-late")
    left = env.from_collection([("a", 100), ("b", 200)]).assign_timestamps_and_watermarks(strategy)
    right = env.from_collection([("a", 105), ("b", 300)]).assign_timestamps_and_watermarks(strategy)
    joined = (
        left.key_by(lambda c: c[0])
        .interval_join(right.key_by(lambda c: c[0]))
        .between(-10, 10)
        .side_output_left_late_data(left_late)
        .side_output_right_late_data(right_late)
        .process(Pair())
    )
    everything = joined.union(
        joined.get_side_output(left_late).map(lambda c: ("left-late", *c)),
        joined.get_side_output(right_late).map(lambda c: ("right-late", *c)),
    )
    assert await everything.execute_and_collect() == [("pair", 100, 105)]
