"""Argument checks shared by models and data modules: each error names the argument, its value and what is allowed."""

from __future__ import annotations


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive integer")


def check_dropout(dropout: float, name: str = "dropout") -> None:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{name}={dropout!r} must lie in [0, 1)")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(allowed)}")
