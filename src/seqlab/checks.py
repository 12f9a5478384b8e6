"""Argument checks shared by models, data modules, tasks and callbacks: each error names the argument, its
value and what is allowed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _check(values: dict[str, Any], ok: Callable[[Any], bool], allowed: str) -> None:
    for name, value in values.items():
        if not ok(value):
            raise ValueError(f"{name}={value!r} must be {allowed}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0  # True is not a count


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def check_positive(**values: int) -> None:
    _check(values, _positive_int, "a positive integer")


def check_positive_or_null(**values: int | None) -> None:
    """Each a positive integer or None (a config's null: no limit, or whole)."""
    _check(values, lambda v: v is None or _positive_int(v), "a positive integer or null")


def check_positive_number_or_null(**values: float | None) -> None:
    """Each a positive int or float (minutes, a norm) or None (a config's null: off)."""
    _check(values, lambda v: v is None or _positive_number(v), "positive or null")


def check_dropout(dropout: float, name: str = "dropout") -> None:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{name}={dropout!r} must lie in [0, 1)")


def check_probability(probability: float, name: str) -> None:
    if not 0.0 <= float(probability) <= 1.0:
        raise ValueError(f"{name}={probability!r} must lie in [0, 1]")


def check_choice(name: str, value: Any, allowed: Sequence[Any] | Mapping[Any, str]) -> None:
    """`allowed`: the values, or each value with what it means (shown in the message as `value (meaning)`)."""
    if value not in list(allowed):
        shown = [f"{a} ({allowed[a]})" for a in allowed] if isinstance(allowed, Mapping) else allowed
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(map(str, shown))}")
