"""Configuration: frozen and validated objects, keyword arguments, Flink's setters as aliases."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flowactors import CheckpointConfig, ExecutionConfig, InvalidGraphError
from flowactors import StreamExecutionEnvironment as Env


def test_execution_config_is_frozen_and_validated() -> None:
    config = ExecutionConfig(batch_size=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 0  # type: ignore[misc]
    with pytest.raises(InvalidGraphError, match="batch_size must be an int >= 1, got 0"):
        ExecutionConfig(batch_size=0)
    with pytest.raises(InvalidGraphError, match="buffer_timeout must be >= 0 ms"):
        config.replace(buffer_timeout_ms=-1)
    with pytest.raises(TypeError):
        config.replace(batch_sise=8)


def test_flink_setters_replace_the_environments_config() -> None:
    env = Env()
    view = env.get_config().set_batch_size(8).set_mailbox_capacity(2)
    view.set_auto_watermark_interval(timedelta(milliseconds=50)).set_buffer_timeout(5)
    assert env.config == ExecutionConfig(
        batch_size=8, mailbox_capacity=2, buffer_timeout_ms=5, auto_watermark_interval_ms=50
    )
    assert view.batch_size == 8 and view.get_auto_watermark_interval() == 50
    with pytest.raises(InvalidGraphError, match="mailbox_capacity must be an int >= 1"):
        env.get_config().set_mailbox_capacity(0)
    assert env.config.mailbox_capacity == 2  # a refused change changes nothing
    env.configure(chaining=False)
    assert env.config.chaining is False


def test_enable_checkpointing_takes_typed_keywords(tmp_path: Path) -> None:
    env = Env().enable_checkpointing(
        timedelta(seconds=1),
        storage=tmp_path,
        timeout=timedelta(minutes=1),
        min_pause=timedelta(0),
        max_concurrent=1,
        retained=3,
    )
    config = env.get_checkpoint_config().config
    assert config == CheckpointConfig(
        interval_ms=1000, storage=tmp_path, timeout_ms=60_000, min_pause_ms=0, retained=3
    )
    bad: dict[str, Any] = {"retaind": 3}
    with pytest.raises(TypeError):
        Env().enable_checkpointing(1000, storage=tmp_path, **bad)
    with pytest.raises(InvalidGraphError, match="retained checkpoints must be >= 1, got 0"):
        Env().enable_checkpointing(1000, storage=tmp_path, retained=0)


def test_checkpoint_setters_are_aliases(tmp_path: Path) -> None:
    env = Env().enable_checkpointing(100, storage=tmp_path)
    env.get_checkpoint_config().set_checkpoint_timeout(5000).set_num_retained_checkpoints(1)
    config = env.get_checkpoint_config().config
    assert (config.timeout_ms, config.retained) == (5000, 1)
    with pytest.raises(InvalidGraphError, match="max concurrent checkpoints must be >= 1"):
        env.get_checkpoint_config().set_max_concurrent_checkpoints(0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.retained = 5  # type: ignore[misc]
