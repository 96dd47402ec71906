"""Keyed state: descriptors, time-to-live, and the state handles user code gets."""

from flowactors._public import adopt
from flowactors.errors import StateError
from flowactors.state.backend import (
    AggregatingState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)
from flowactors.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    StateTtlConfig,
    UpdateType,
    ValueStateDescriptor,
)
from flowactors.state.rocksdb import RocksDBStateBackend

__all__ = [
    "AggregatingState",
    "AggregatingStateDescriptor",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "ReducingState",
    "ReducingStateDescriptor",
    "RocksDBStateBackend",
    "StateDescriptor",
    "StateError",
    "StateTtlConfig",
    "UpdateType",
    "ValueState",
    "ValueStateDescriptor",
]

adopt(globals(), __name__)
