"""Option dataclasses: declared fields with help texts, typed coercion of YAML/CLI
values, and construction that rejects unknown keys. Used by the run configuration and
by every method's config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any


def option(default: Any, help: str) -> Any:
    """A dataclass field with a help text (shown by ``--help``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert ``value`` to a field's declared scalar type, or raise naming the field.

    Needed because YAML 1.1 reads ``1e-4`` (no dot) as a string, and CLI/--set values
    arrive as text: ``lr: 1e-4`` must still mean the float 0.0001.
    """
    kind = str(annotation).replace(" | None", "").replace("Optional[", "").rstrip("]")
    if value is None and "None" in str(annotation):
        return None
    try:
        if kind == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                return value.lower() in ("true", "yes")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            if not math.isfinite(float(value)):  # NaN passes every range check
                raise ValueError(f"option {name!r} must be a finite number, got {value!r}")
            return float(value)
        if kind == "str" and not isinstance(value, str):
            raise TypeError
    except (TypeError, OverflowError):  # OverflowError: int(float("1e999"))
        raise ValueError(f"option {name!r} must be a finite {kind}, got {value!r}") from None
    except ValueError as e:
        if "finite" in str(e):
            raise
        raise ValueError(f"option {name!r} must be {kind}, got {value!r}") from None
    return value


def make_config(cls: type, options: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``options``; unknown keys are an error naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for {where}; "
            f"known options: {', '.join(sorted(fields))}"
        )
    return cls(**{k: coerce(v, fields[k].type, k) for k, v in options.items()})
