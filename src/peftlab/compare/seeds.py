"""One row per method over its seeds (``compare --seeds``): the mean of each figure the
verdicts use, ± the sample standard deviation across seeds."""

from __future__ import annotations

from .fmt import DASH, fmt_bytes, fmt_seconds
from .groups import num
from .stats import spread
from .verdicts import groups

COLUMNS = [
    "Method",
    "Seeds",
    "Perplexity after",
    "Exact match",
    "General-set perplexity",
    "Peak memory",
    "Tokens/s",
    "Wall time",
]


def _ppl(v: float) -> str:
    return f"{v:.3f}"


def _pct(v: float) -> str:
    return f"{v:.1%}"


FIGURES = [
    (lambda r: (r.get("after") or {}).get("perplexity"), _ppl),
    (lambda r: (r.get("after") or {}).get("exact_match"), _pct),
    (lambda r: (r.get("general") or {}).get("perplexity"), _ppl),
    (lambda r: r.get("peak_memory_bytes"), fmt_bytes),
    (lambda r: r.get("tokens_per_s"), lambda v: f"{v:,.0f}"),
    (lambda r: r.get("wall_seconds"), fmt_seconds),
]


def cell(values: list[float], show) -> str:
    """``mean ± sd`` over seeds; one value as it is; none: a dash."""
    if not values:
        return DASH
    s = spread(values)
    return show(values[0]) if s is None else f"{show(s[0])} ± {show(s[1])}"


def table(runs: list[dict]) -> list[list[str]]:
    """The rows, or none when no method ran more than one seed."""
    by = groups([r for r in runs if r.get("status") == "ok" and r.get("method") != "base"])
    if not any(len(rs) > 1 for rs in by.values()):
        return []
    return [
        [g, str(len(rs))]
        + [cell([v for r in rs if (v := num(get(r))) is not None], show) for get, show in FIGURES]
        for g, rs in by.items()
    ]
