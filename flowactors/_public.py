"""Public classes name the public module that exports them (``flowactors.X``, not
``flowactors.api.datastream.X``), in reprs, pickles and error messages."""

from __future__ import annotations

from collections.abc import Mapping


def adopt(namespace: Mapping[str, object], module: str) -> None:
    """Set ``__module__`` of the classes a public module lists in ``__all__``."""
    names = namespace["__all__"]
    assert isinstance(names, list)
    for name in names:
        obj = namespace[name]
        if (
            isinstance(obj, type)
            and obj.__module__.startswith("flowactors.")
            and (obj.__module__ != module)
        ):
            obj.__module__ = module
