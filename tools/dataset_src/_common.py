"""Helpers shared by the dataset source modules."""

from __future__ import annotations


def rec(
    instruction: str, input: str, output: str, category: str, exact: bool, origin: str = "hand"
) -> dict:
    """Build one record (``origin`` is bookkeeping and is dropped on export)."""
    return {
        "instruction": instruction,
        "input": input,
        "output": output,
        "category": category,
        "exact": bool(exact),
        "origin": origin,
    }


def cycle(options, i: int):
    """Pick ``options[i % len(options)]`` (deterministic phrasing variety)."""
    return options[i % len(options)]
