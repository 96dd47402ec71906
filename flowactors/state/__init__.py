"""Keyed state: descriptors, time-to-live, and the state handles user code gets."""

from flowactors.state.backend import (
    AggregatingState,
    ListState,
    MapState,
    ReducingState,
    StateError,
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

__all__ = [
    "AggregatingState",
    "AggregatingStateDescriptor",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "ReducingState",
    "ReducingStateDescriptor",
    "StateDescriptor",
    "StateError",
    "StateTtlConfig",
    "UpdateType",
    "ValueState",
    "ValueStateDescriptor",
]
