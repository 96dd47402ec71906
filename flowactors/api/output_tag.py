"""``OutputTag``: the name of a side output."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["OutputTag"]

T = TypeVar("T")


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
