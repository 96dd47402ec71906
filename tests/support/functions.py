"""User functions several tests use."""

from __future__ import annotations

from flowactors import AggregateFunction

__all__ = ["Average"]


class Average(AggregateFunction[tuple[str, int], tuple[int, int], float]):
    """The mean of the second field; mergeable (for session windows)."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: tuple[str, int], acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + value[1], acc[1] + 1)

    def get_result(self, acc: tuple[int, int]) -> float:
        return acc[0] / acc[1]

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])
