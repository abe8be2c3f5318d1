"""The comparison's runs in groups: a method and its swept value, the seeds of one
group averaged; the Pareto set over (trainable parameters, perplexity); a colour per
group. Numbers only: the charts (``plots.py``) and the verdicts read them alike."""

from __future__ import annotations

import math
from typing import Any

BASE_COLOR = "#7f7f7f"
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
]


def num(x: Any) -> float | None:
    """``x`` as a finite float, else None (missing, null, NaN, inf or not a number)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def group_of(r: dict) -> str:
    """The group a run belongs to: its method and swept value (``lora-r8``); the runs of
    one group differ by seed only."""
    m = r.get("method") or r["name"]
    return m + "".join(f"-{k}{v}" for k, v in (r.get("sweep") or {}).items())


def group_means(runs: list[dict], get) -> dict[str, float]:
    """Per group, the mean of ``get(run)`` over those of its runs that have a figure."""
    acc: dict[str, list[float]] = {}
    for r in runs:
        if (v := num(get(r))) is not None:
            acc.setdefault(group_of(r), []).append(v)
    return {g: sum(vs) / len(vs) for g, vs in acc.items()}


def param_points(runs: list[dict]) -> dict[str, tuple[float, float]]:
    """(trainable parameters, perplexity after training) per group, seeds averaged; the
    base model left out."""
    runs = [r for r in runs if r.get("method") != "base"]
    p = group_means(runs, lambda r: (r.get("params") or {}).get("trainable"))
    y = group_means(runs, lambda r: (r.get("after") or {}).get("perplexity"))
    return {g: (p[g], y[g]) for g in p if g in y}


def colors(runs: list[dict]) -> dict[str, str]:
    """A stable colour per run name and per group (the seeds of a method share one):
    grey for the base model, the palette in row order."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for r in runs:
        if r.get("method") == "base":
            out[r["name"]] = BASE_COLOR
            continue
        g = group_of(r)
        seen.setdefault(g, PALETTE[len(seen) % len(PALETTE)])
        out[r["name"]] = out[g] = seen[g]
    return out


def pareto_set(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated: no other point is <= on both axes and < on one."""
    keep = []
    for n, (x, y) in points.items():
        dominated = any(
            ox <= x and oy <= y and (ox < x or oy < y) for o, (ox, oy) in points.items() if o != n
        )
        if not dominated:
            keep.append(n)
    return keep
