"""Text for the report's figures: counts, bytes, seconds, values, percentages."""

from __future__ import annotations

from typing import Any

from .groups import num

DASH = "—"


def _scaled(x: Any, units: tuple, sep: str, plain: str) -> str:
    """``x`` in the first of ``units`` ((divisor, name), largest first) it reaches."""
    x = num(x)
    if x is None:
        return DASH
    for div, unit in units:
        if abs(x) >= div:
            return f"{x / div:.3g}{sep}{unit}"
    return f"{x:.0f}{plain}"


def fmt_count(n: Any) -> str:
    return _scaled(n, ((1e9, "B"), (1e6, "M"), (1e3, "K")), "", "")


def fmt_bytes(b: Any) -> str:
    return _scaled(b, ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")), " ", " B")


def fmt_seconds(s: Any) -> str:
    s = num(s)
    if s is None:
        return DASH
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"


def fmt_value(x: Any, decimals: int = 2) -> str:
    x = num(x)
    if x is None:
        return DASH
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.{decimals}f}"


def fmt_pct(p: float) -> str:
    return f"{p:.2g}%" if abs(p) < 0.1 else f"{p:.1f}%" if abs(p) < 10 else f"{p:.0f}%"


def fmt_share(p: Any) -> str:
    p = num(p)
    return DASH if p is None else ("0%" if p == 0 else fmt_pct(p))
