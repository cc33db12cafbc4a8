"""Checks that an answer has the shape of a documented JSON example."""

from __future__ import annotations

from typing import Any


def assert_same_shape(expected: Any, actual: Any, path: str = "$") -> None:
    """`actual` has every key of `expected`, recursively, with values of the same JSON
    types (a list's first item stands for all; an empty object is free-form)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        missing = set(expected) - set(actual)
        assert not missing, f"{path}: missing {missing}"
        for key, value in expected.items():
            assert_same_shape(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and actual, path
        assert_same_shape(expected[0], actual[0], f"{path}[0]")
    else:
        assert type(actual) is type(expected), f"{path}: {actual!r} vs {expected!r}"
