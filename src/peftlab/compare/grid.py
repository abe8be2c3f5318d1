"""What a comparison runs: its config split into methods, per-method options and the
common train keys; the seeds (``--seeds``); the sweep (``--sweep``); and the list of
runs, methods × swept values × seeds, in order. Nothing here trains or writes."""

from __future__ import annotations

from typing import Any

import yaml

from ..config import build_config
from ..methods import METHODS
from .benchmarks import CONFIG_KEYS as BENCHMARK_KEYS


def default_methods() -> list[str]:
    """The methods compared when none are named: those with ``compare_by_default``."""
    return sorted(name for name, cls in METHODS.items() if cls.compare_by_default)


def split_compare_config(data: dict[str, Any]) -> tuple[list[str] | None, dict, dict]:
    """(methods, per-method options, common train keys) from a compare mapping."""
    data = dict(data)
    data.pop("seeds", None)  # the harness's own keys (see parse_seeds, compare)
    for key in ("general_eval", *BENCHMARK_KEYS):
        data.pop(key, None)
    data.pop("sweep", None)
    methods = data.pop("methods", None)
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    per_method = {
        name: data.pop(name)
        for name in list(data)
        if name in METHODS and isinstance(data[name], dict)
    }
    return methods, per_method, data


def method_configs(
    data: dict[str, Any], methods: list[str] | None = None, **overrides: Any
) -> dict[str, Any] | None:
    """One run configuration per method of a compare mapping (its ``methods``, or
    ``methods`` when given), each with its own options, as :func:`compare` builds them;
    None when ``data`` is a plain train config (no ``methods``, no per-method mapping)."""
    cfg_methods, per_method, common = split_compare_config(data)
    if cfg_methods is None and not per_method:
        return None
    names = list(methods or cfg_methods or default_methods())
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(sorted(METHODS))}"
        )
    common.update({k: v for k, v in overrides.items() if v is not None})
    return {m: build_config(common, method=m, **per_method.get(m, {})) for m in names}


def parse_seeds(seeds: Any, default: int) -> list[int] | None:
    """``--seeds 3`` (three seeds from ``default`` on) or a list ``1,7,42``; None: one
    run per method under the training seed, named by the method alone."""
    if seeds in (None, "", 1, "1"):
        return None
    if isinstance(seeds, str):
        seeds = [s.strip() for s in seeds.split(",") if s.strip()]
        seeds = int(seeds[0]) if len(seeds) == 1 else [int(s) for s in seeds]
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"--seeds must be a count of at least 1 or a list, got {seeds}")
        return [default + i for i in range(seeds)]
    out = [int(s) for s in seeds]
    if len(set(out)) != len(out):
        raise ValueError(f"--seeds lists a seed twice: {out}")
    return out


def parse_sweep(spec: Any) -> tuple[str, list[Any]] | None:
    """``r=2,4,8`` (or a mapping ``{r: [2, 4, 8]}``) -> ("r", [2, 4, 8]); values are read
    as YAML scalars (numbers, booleans, strings)."""
    if spec in (None, "", {}):
        return None
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise ValueError(f"--sweep takes one option, got {sorted(spec)}")
        key, values = next(iter(spec.items()))
        values = values if isinstance(values, list) else [values]
    else:
        key, sep, rest = str(spec).partition("=")
        values = [_scalar(v.strip()) for v in rest.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise ValueError(
                f"--sweep must look like OPTION=V1,V2,... (e.g. r=2,4,8), got {spec!r}"
            )
    key = str(key).strip().replace("-", "_")
    if len(set(map(str, values))) != len(values):
        raise ValueError(f"--sweep lists a value twice: {values}")
    return key, values


def _scalar(text: str) -> Any:
    """A swept value: an int, a float (``1e-4`` too, which YAML reads as text), else
    what YAML makes of it (``true``, a name)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def sweepable(method: str, key: str) -> bool:
    """Whether ``key`` is an option of ``method`` or a training option."""
    import dataclasses

    from ..config import TrainConfig

    fields = {f.name for f in dataclasses.fields(METHODS[method].config_cls)}
    return key in fields or key in {f.name for f in dataclasses.fields(TrainConfig)}


def plan_runs(
    methods: list[str], seed_list: list[int] | None, sweep: tuple[str, list[Any]] | None
) -> list[tuple[str, str, int | None, dict]]:
    """(row name, method, seed, swept options) of every run, in order: each method
    once per swept value (methods without the option run once) and per seed."""
    out = []
    for m in methods:
        points = (
            [(f"{m}-{sweep[0]}{v}", {sweep[0]: v}) for v in sweep[1]]
            if sweep and sweepable(m, sweep[0])
            else [(m, {})]
        )
        for name, opts in points:
            out += (
                [(name, m, None, opts)]
                if seed_list is None
                else [(f"{name}-s{s}", m, s, opts) for s in seed_list]
            )
    return out
