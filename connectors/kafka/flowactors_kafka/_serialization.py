"""Turning Kafka bytes into records and back: bytes, str and JSON (orjson).

A deserializer is any callable ``bytes -> T`` and a serializer any callable ``T -> bytes``;
the builders also take the names ``"bytes"``, ``"str"`` and ``"json"`` for the built-ins.

>>> json_deserializer(b'{"a": 1}')
{'a': 1}
>>> json_serializer({"a": 1})
b'{"a":1}'
>>> string_serializer("ride"), string_deserializer(b"ride")
(b'ride', 'ride')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import orjson

Deserializer = Callable[[bytes], Any]
Serializer = Callable[[Any], bytes]
#: The built-in (de)serializers by name.
DeserializerName: TypeAlias = Literal["json", "str", "string", "bytes"]
SerializerName: TypeAlias = Literal["json", "str", "string", "bytes"]


def bytes_deserializer(data: bytes) -> bytes:
    """The raw bytes."""
    return data


def string_deserializer(data: bytes) -> str:
    """UTF-8 text."""
    return data.decode("utf-8")


def json_deserializer(data: bytes) -> Any:
    """A JSON value (orjson)."""
    return orjson.loads(data)


def bytes_serializer(value: Any) -> bytes:
    """``bytes``/``bytearray``/``memoryview`` as they are."""
    return bytes(value)


def string_serializer(value: Any) -> bytes:
    """``str(value)`` as UTF-8."""
    return str(value).encode("utf-8")


def json_serializer(value: Any) -> bytes:
    """JSON (orjson; dataclasses, datetimes and numpy scalars included)."""
    return orjson.dumps(value)


# By name, the JSON codecs are orjson's own functions: one C call per record, no wrapper.
_DESERIALIZERS: dict[str, Deserializer] = {
    "bytes": bytes_deserializer,
    "str": string_deserializer,
    "string": string_deserializer,
    "json": orjson.loads,
}
_SERIALIZERS: dict[str, Serializer] = {
    "bytes": bytes_serializer,
    "str": string_serializer,
    "string": string_serializer,
    "json": orjson.dumps,
}


def deserializer(spec: str | Deserializer) -> Deserializer:
    """A deserializer from a callable or one of the names ``bytes``, ``str``, ``json``."""
    if spec is json_deserializer:
        return orjson.loads
    if isinstance(spec, str):
        try:
            return _DESERIALIZERS[spec]
        except KeyError:
            raise ValueError(
                f"unknown deserializer {spec!r}: use {sorted(_DESERIALIZERS)} or a callable"
            ) from None
    if not callable(spec):
        raise TypeError(f"a deserializer must be callable, got {spec!r}")
    return spec


def serializer(spec: str | Serializer) -> Serializer:
    """A serializer from a callable or one of the names ``bytes``, ``str``, ``json``."""
    if spec is json_serializer:
        return orjson.dumps
    if isinstance(spec, str):
        try:
            return _SERIALIZERS[spec]
        except KeyError:
            raise ValueError(
                f"unknown serializer {spec!r}: use {sorted(_SERIALIZERS)} or a callable"
            ) from None
    if not callable(spec):
        raise TypeError(f"a serializer must be callable, got {spec!r}")
    return spec
