"""The comparison report's charts, drawn with matplotlib's Agg canvas into PNG bytes.

No pyplot: each chart is its own ``Figure`` on a ``FigureCanvasAgg``, so nothing touches
the caller's backend or global state, no display is needed, and output is deterministic.
Every function takes the report's runs (dicts as in ``results.jsonl``) and returns the
PNG as bytes, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import functools
import io
import math
import re
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .groups import PALETTE, num

DPI = 110
STYLE = {"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10, "legend.fontsize": 9}


def styled(fn):
    """Draw under the report's rc settings without changing the caller's."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _curve(points: Any) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for p in points or []:
        if (
            isinstance(p, (list, tuple))
            and len(p) >= 2
            and num(p[0]) is not None
            and num(p[1]) is not None
        ):
            xs.append(num(p[0]))
            ys.append(num(p[1]))
    return xs, ys


@styled
def loss_curves(runs: list[dict], cmap: dict[str, str]) -> bytes | None:
    """Training loss (solid) and eval loss (dashed, dots) of every run on one chart."""
    fig = new_figure(9, 4.6)
    ax = fig.add_subplot()
    drawn = False
    for r in runs:
        c = cmap[r["name"]]
        xs, ys = _curve(r.get("loss_curve"))
        if xs:
            ax.plot(xs, ys, color=c, lw=1.4, alpha=0.9, label=f"{r['name']} train")
            drawn = True
        xs, ys = _curve(r.get("eval_curve"))
        if xs:
            ax.plot(xs, ys, color=c, lw=1.4, ls="--", marker="o", ms=4, label=f"{r['name']} eval")
            drawn = True
        base_loss = num((r.get("after") or {}).get("eval_loss"))
        if r.get("method") == "base" and base_loss is not None:
            ax.axhline(base_loss, color=c, lw=1, ls=":", label=f"{r['name']} eval (untrained)")
    if not drawn:
        return None
    ax.set(
        xlabel="optimiser step",
        ylabel="loss (mean NLL per target token)",
        title="Training and eval loss",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return to_png(fig)


@styled
def equal_compute(runs: list[dict], cmap: dict[str, str]) -> bytes | None:
    """Eval perplexity against training time and against training tokens, every run,
    from its periodic evaluations: better per step but slower per second shows here."""
    fig = new_figure(11, 4.4)
    axes = fig.subplots(1, 2, sharey=True)
    drawn = False
    for r in runs:
        pts = [
            p
            for p in r.get("eval_curve") or []
            if len(p) >= 4 and None not in (num(p[1]), num(p[2]), num(p[3]))
        ]
        if len(pts) < 2:
            continue
        ppl = [math.exp(min(num(p[1]), 50.0)) for p in pts]
        for ax, col in zip(axes, (2, 3)):
            ax.plot(
                [num(p[col]) for p in pts],
                ppl,
                color=cmap[r["name"]],
                lw=1.4,
                marker="o",
                ms=4,
                label=r["name"],
            )
        drawn = True
    if not drawn:
        return None
    axes[0].set(
        xlabel="training time (s, optimiser steps only)",
        ylabel="eval perplexity",
        title="Perplexity against training time",
    )
    axes[1].set(xlabel="training tokens", title="Perplexity against training tokens")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return to_png(fig)


@styled
def _bars(
    items: list[tuple[str, float, str]], title: str, xlabel: str, fmt, rows: int
) -> bytes | None:
    if not items:
        return None
    fig = new_figure(6.2, 0.45 * max(rows, len(items)) + 1.4)
    ax = fig.add_subplot()
    names = [n for n, _, _ in items][::-1]
    vals = [v for _, v, _ in items][::-1]
    ax.barh(names, vals, color=[c for _, _, c in items][::-1], height=0.6)
    top = max(vals) or 1.0
    for i, v in enumerate(vals):
        ax.text(v + top * 0.01, i, fmt(v), va="center", fontsize=9)
    ax.set_xlim(0, top * 1.25)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(alpha=0.3, axis="x")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return to_png(fig)


def memory_bars(runs: list[dict], cmap: dict[str, str], fmt) -> bytes | None:
    kinds = sorted(
        {str(r.get("memory_kind") or "?") for r in runs if num(r.get("peak_memory_bytes"))}
    )
    items = [
        (r["name"], num(r.get("peak_memory_bytes")) / 2**20, cmap[r["name"]])
        for r in runs
        if num(r.get("peak_memory_bytes"))
    ]
    what = {"rss": "process RSS", "cuda": "CUDA max allocated"}
    label = " / ".join(what.get(k, k) for k in kinds)
    return _bars(items, f"Peak memory ({label})", "MiB", lambda v: fmt(v * 2**20), len(runs))


def throughput_bars(runs: list[dict], cmap: dict[str, str]) -> bytes | None:
    items = [
        (r["name"], num(r.get("tokens_per_s")), cmap[r["name"]])
        for r in runs
        if num(r.get("tokens_per_s"))
    ]
    return _bars(
        items, "Training throughput", "tokens per second", lambda v: f"{v:,.0f}", len(runs)
    )


LAYER = re.compile(r"^(.*?)(?:^|\.)(\d+)\.(.+)$")


@styled
def layer_ranks(run_name: str, key: str, ranks: dict[str, Any]) -> bytes | None:
    """Rank per adapted module: a layer x module-kind grid when the names carry a layer
    index (``...layers.N.kind``), else one bar per module."""
    vals = {n: num(v) for n, v in ranks.items() if num(v) is not None}
    if not vals:
        return None
    parsed = {n: LAYER.match(n) for n in vals}
    title = f"{run_name}: {key} (per adapted module)"
    if all(parsed.values()):
        one_prefix = len({m.group(1) for m in parsed.values()}) == 1
        kind = {
            n: m.group(3) if one_prefix else f"{m.group(1)}.{m.group(3)}" for n, m in parsed.items()
        }
        layers = sorted({int(m.group(2)) for m in parsed.values()})
        kinds = list(dict.fromkeys(kind.values()))
        grid = [[math.nan] * len(layers) for _ in kinds]
        for n, m in parsed.items():
            grid[kinds.index(kind[n])][layers.index(int(m.group(2)))] = vals[n]
        fig = new_figure(min(max(3 + 0.3 * len(layers), 6.5), 12), 1.6 + 0.36 * len(kinds))
        ax = fig.add_subplot()
        im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(kinds)), kinds)
        ax.set_xticks(
            range(len(layers)), [str(i) for i in layers], fontsize=8 if len(layers) <= 40 else 6
        )
        if len(layers) * len(kinds) <= 400:
            lo, hi = min(vals.values()), max(vals.values())
            for i, row in enumerate(grid):
                for j, v in enumerate(row):
                    if not math.isnan(v):
                        light = hi > lo and (v - lo) / (hi - lo) < 0.6
                        ax.text(
                            j,
                            i,
                            f"{v:g}",
                            ha="center",
                            va="center",
                            fontsize=8 if len(layers) <= 16 else 7,
                            color="white" if light or hi == lo else "black",
                        )
        ax.set(xlabel="layer", title=title)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
        return to_png(fig)
    names = list(vals)
    fig = new_figure(9, min(0.22 * len(names) + 1.2, 30))
    ax = fig.add_subplot()
    ax.barh(names[::-1], [vals[n] for n in names][::-1], color=PALETTE[0])
    ax.tick_params(axis="y", labelsize=7)
    ax.set(title=title, xlabel=key)
    return to_png(fig)
