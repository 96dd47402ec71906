"""Base classes for user functions, and :class:`OutputTag`.

Plain callables serve wherever a function needs no setup or state; subclass
these when it does. Every class has ``open(ctx)`` and ``close()``, called once
per parallel subtask; each subtask works on its own copy of the function
object (as in Flink, where functions are serialised to each task), so keep
handles to shared services out of ``__init__`` and create them in ``open``.
Any of the methods may be ``async def``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from flowactors.runtime.context import RuntimeContext

IN = TypeVar("IN")
OUT = TypeVar("OUT")
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class OutputTag(Generic[T]):
    """Names a side output. Two tags with the same name are the same side output.

    >>> late = OutputTag("late")
    >>> late == OutputTag("late")
    True
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("an OutputTag needs a non-empty name")
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputTag) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("OutputTag", self.name))

    def __repr__(self) -> str:
        return f"OutputTag({self.name!r})"


class Collector(Protocol[T_contra]):
    """``out`` in process functions."""

    def collect(self, value: T_contra) -> None: ...


class Function:
    """Lifecycle shared by all function classes."""

    def open(self, ctx: RuntimeContext) -> Any:
        """Called once per subtask before the first record (may be ``async def``)."""

    def close(self) -> Any:
        """Called once per subtask at the end, also after a failure (may be ``async def``)."""


class MapFunction(Function, ABC, Generic[IN, OUT]):
    @abstractmethod
    def map(self, value: IN) -> OUT: ...


class FlatMapFunction(Function, ABC, Generic[IN, OUT]):
    @abstractmethod
    def flat_map(self, value: IN) -> Iterable[OUT]: ...


class FilterFunction(Function, ABC, Generic[IN]):
    @abstractmethod
    def filter(self, value: IN) -> bool: ...


class ReduceFunction(Function, ABC, Generic[T]):
    @abstractmethod
    def reduce(self, a: T, b: T) -> T: ...


class ProcessFunction(Function, ABC, Generic[IN, OUT]):
    """Per record with a context: ``ctx.timestamp()``, ``ctx.output(tag, v)``; emit with ``out``."""

    @abstractmethod
    def process_element(self, value: IN, ctx: Any, out: Collector[OUT]) -> Any: ...


__all__ = [
    "Collector",
    "FilterFunction",
    "FlatMapFunction",
    "Function",
    "MapFunction",
    "OutputTag",
    "ProcessFunction",
    "ReduceFunction",
]
