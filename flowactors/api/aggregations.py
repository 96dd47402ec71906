"""Aggregations by field (``sum``, ``min``, ``max``, ``min_by``, ``max_by``) as reduce functions.

A field is a position for tuples and lists, a key for dicts, an attribute for
other objects; position 0 of an atomic value (a number, a string) is the value
itself, as in Flink. Records are never mutated: ``sum``, ``min`` and ``max``
return a copy of the first record with the field replaced, ``min_by`` and
``max_by`` one of the records themselves (the first one on ties).

>>> name, fn = field_aggregation("sum", 1)
>>> name, fn(("a", 1), ("a", 2))
('Sum', ('a', 3))
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["Aggregation", "field_aggregation", "field_getter", "field_setter"]

Aggregation = Literal["sum", "min", "max", "min_by", "max_by"]


def field_aggregation(kind: Aggregation, field: int | str) -> tuple[str, Callable[[Any, Any], Any]]:
    """The operator name and the reduce function of aggregation ``kind`` over ``field``."""
    get = field_getter(field)
    if kind == "min_by":
        return "MinBy", lambda a, b: b if get(b) < get(a) else a
    if kind == "max_by":
        return "MaxBy", lambda a, b: b if get(b) > get(a) else a
    combine = _COMBINE.get(kind)
    if combine is None:
        raise ValueError(f"unknown aggregation {kind!r}")
    put = field_setter(field)

    def reduce(a: Any, b: Any) -> Any:
        return put(a, combine(get(a), get(b)))

    return kind.capitalize(), reduce


_COMBINE: dict[str, Callable[[Any, Any], Any]] = {
    "sum": operator.add,
    "min": lambda a, b: b if b < a else a,
    "max": lambda a, b: b if b > a else a,
}


def field_getter(field: int | str) -> Callable[[Any], Any]:
    """Field access: index for tuples/lists, key for dicts, attribute for objects.

    Position 0 of an atomic value (a number, a string) is the value itself, as in Flink.
    """
    if isinstance(field, int):
        index = operator.itemgetter(field)
        if field != 0:
            return index

        def get_first(record: Any) -> Any:
            return index(record) if isinstance(record, tuple | list | dict) else record

        return get_first
    item = operator.itemgetter(field)
    attr = operator.attrgetter(field)

    def get(record: Any) -> Any:
        return item(record) if isinstance(record, dict) else attr(record)

    return get


def field_setter(field: int | str) -> Callable[[Any, Any], Any]:
    """A copy of ``record`` with ``field`` replaced (records are never mutated in place)."""

    def put(record: Any, value: Any) -> Any:
        if field == 0 and not isinstance(record, tuple | list | dict):
            return value
        if isinstance(record, tuple):
            fields = getattr(record, "_fields", None)
            if fields is not None:  # a named tuple keeps its type
                name = field if isinstance(field, str) else fields[field]
                return record._replace(**{name: value})  # type: ignore[attr-defined]
            if not isinstance(field, int):
                raise TypeError(f"field {field!r} of a plain tuple: use a position")
            return (*record[:field], value, *record[field + 1 :])
        if isinstance(record, list):
            out = list(record)
            out[field] = value  # type: ignore[index]
            return out
        if isinstance(record, dict):
            return {**record, field: value}
        out = copy.copy(record)
        setattr(out, str(field), value)
        return out

    return put
