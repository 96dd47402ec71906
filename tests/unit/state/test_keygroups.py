from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum

import pytest

from flowactors import InvalidKeyError
from flowactors.state.keygroups import (
    KeyRouter,
    key_bytes,
    key_group_for,
    key_group_range,
    operator_index_for_key_group,
)

KEYS_SCRIPT = """
import json
from flowactors.state.keygroups import key_group_for
keys = ["alpha", "beta", "", "ü-nicode", 7, -3, 2**70, 1.5, ("a", 1), (("x",), None), b"raw"]
keys += [f"driver-{i}" for i in range(200)]
print(json.dumps([key_group_for(k, 128) for k in keys]))
"""


def _groups_in_subprocess(seed: str) -> list[int]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", KEYS_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout))


def test_key_groups_are_identical_across_hash_seeds() -> None:
    first = _groups_in_subprocess("1")
    second = _groups_in_subprocess("4242")
    assert first == second
    # and the groups actually spread: 211 keys over 128 groups use many of them
    assert len(set(first)) > 60


def test_equal_keys_get_equal_groups() -> None:
    class Color(StrEnum):
        RED = "red"

    assert key_bytes(1) == key_bytes(1.0) == key_bytes(True)
    assert key_bytes("red") == key_bytes(Color.RED)
    assert key_bytes(("a", 1)) != key_bytes(("a", "1"))
    assert key_bytes(frozenset({"a", "b"})) == key_bytes(frozenset({"b", "a"}))


def test_value_objects_are_keys() -> None:
    @dataclass(frozen=True)
    class Point:
        x: int
        y: int

    assert key_group_for(Point(1, 2), 128) == key_group_for(Point(1, 2), 128)


def test_unhashable_key_is_rejected() -> None:
    with pytest.raises(InvalidKeyError, match="unhashable key of type list"):
        key_bytes([1, 2])


@pytest.mark.parametrize(
    ("max_parallelism", "parallelism"),
    [(m, p) for m in (1, 7, 128, 1000) for p in (1, 2, 3, 4, 7) if p <= m],
)
def test_key_group_ranges_partition_and_match_routing(
    max_parallelism: int, parallelism: int
) -> None:
    owned: list[int] = []
    for index in range(parallelism):
        groups = key_group_range(max_parallelism, parallelism, index)
        assert len(groups) > 0
        for g in groups:
            assert operator_index_for_key_group(max_parallelism, parallelism, g) == index
        owned.extend(groups)
    assert owned == list(range(max_parallelism))


def test_router_caches_and_bounds_its_memory() -> None:
    router = KeyRouter(128, 4, limit=10)
    targets = [router[f"k{i}"] for i in range(25)]
    assert len(router) <= 10
    for i, t in enumerate(targets):
        expected = operator_index_for_key_group(128, 4, key_group_for(f"k{i}", 128))
        assert t == expected
