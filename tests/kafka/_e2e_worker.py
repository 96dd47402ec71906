"""The job of the end-to-end exactly-once test, run in its own process (which the test kills).

Kafka (bounded: what the input held when the job first started) -> key_by(key) -> a running
count per key in keyed state -> exactly-once KafkaSink. Every output record names its input
record and the count, so the expected output is known exactly. Checkpoints every
``--interval`` ms into ``--storage``; a restarted process resumes from the newest one.

    python -m tests.kafka._e2e_worker BOOTSTRAP INPUT OUTPUT STORAGE PREFIX
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from flowactors_kafka import KafkaSink, KafkaSource

from flowactors import (
    KeyedProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)
from flowactors.spi import Sink, SinkWriter, SinkWriterContext


class SlowCompletion(Sink[Any]):
    """The Kafka sink, told of completed checkpoints ``delay_s`` late: transactions stay
    pre-committed longer, so a kill often finds one that only recovery can commit."""

    def __init__(self, inner: Sink[Any], delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _SlowWriter(self.inner.create_writer(context), self.delay_s)


class _SlowWriter(SinkWriter[Any]):
    def __init__(self, inner: SinkWriter[Any], delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    async def open(self) -> None:
        await self.inner.open()

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        await self.inner.write(values, timestamps)

    async def flush(self, end_of_input: bool) -> None:
        await self.inner.flush(end_of_input)

    async def close(self) -> None:
        await self.inner.close()

    async def prepare_commit(self, checkpoint_id: int) -> None:
        await self.inner.prepare_commit(checkpoint_id)

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return self.inner.snapshot_state(checkpoint_id)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        await asyncio.sleep(self.delay_s)
        await self.inner.notify_checkpoint_complete(checkpoint_id)


class RunningCount(KeyedProcessFunction):
    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor[int]("count"))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        out.collect({"i": value["i"], "k": value["k"], "n": n})


def build(args: argparse.Namespace) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=args.parallelism)
    env.enable_checkpointing(args.interval, storage=args.storage, resume="latest")
    source = KafkaSource(
        bootstrap_servers=args.bootstrap,
        topics=[args.input],
        value_deserializer="json",
        starting_offsets="earliest",
        bounded="latest",
    )
    sink = KafkaSink(
        bootstrap_servers=args.bootstrap,
        topic=args.output,
        value_serializer="json",
        key_serializer=lambda r: str(r["k"]).encode(),
        delivery_guarantee="exactly-once",
        transactional_id_prefix=args.prefix,
    )
    (
        env.from_source(source, name="input")
        .uid("input")
        .key_by(lambda r: r["k"])
        .process(RunningCount())
        .uid("running-count")
        .sink_to(SlowCompletion(sink, args.commit_delay_ms / 1000), name="output")
        .uid("output")
    )
    return env


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "input", "output", "storage", "prefix"):
        parser.add_argument(name)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--interval", type=int, default=200)
    parser.add_argument("--commit-delay-ms", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("flowactors_kafka").setLevel(logging.INFO)
    build(args).execute_blocking("e2e-exactly-once")
    print("done", flush=True)


if __name__ == "__main__":
    main()
