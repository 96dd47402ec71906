"""A worker process for test_housekeeping: keeps keyed state in RocksDB until killed.

``python rocksdb_worker.py LOCAL_DIR`` runs an endless job whose keyed state lives
in RocksDB working directories under LOCAL_DIR and prints ``ready`` once every
subtask has stored state.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from flowactors import KeyedProcessFunction, StreamExecutionEnvironment, ValueStateDescriptor
from flowactors.state import RocksDBStateBackend


class Store(KeyedProcessFunction[int, int, None]):
    def open(self, ctx: Any) -> None:
        self.value = ctx.get_state(ValueStateDescriptor[int]("value"))

    def process_element(self, value: int, ctx: Any, out: Any) -> None:
        self.value.update(value)


def build(local_dir: Path, parallelism: int = 2) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.set_state_backend(RocksDBStateBackend(local_dir=local_dir))
    env.from_generator(lambda i: i, rate=2_000).uid("numbers").key_by(lambda i: i % 100).process(
        Store()
    ).uid("store").print()
    return env


async def main(local_dir: Path) -> None:
    client = await build(local_dir).execute_async("rocksdb-worker")
    await asyncio.sleep(0.3)
    print("ready", flush=True)
    await client.wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
