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
from matplotlib.ticker import NullFormatter

DPI = 110
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
STYLE = {"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10, "legend.fontsize": 9}


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


def styled(fn):
    """Draw under the report's rc settings without changing the caller's."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
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
    fig = _figure(9, 4.6)
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
    return _png(fig)


@styled
def equal_compute(runs: list[dict], cmap: dict[str, str]) -> bytes | None:
    """Eval perplexity against training time and against training tokens, every run,
    from its periodic evaluations: better per step but slower per second shows here."""
    fig = _figure(11, 4.4)
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
    return _png(fig)


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


@styled
def perplexity_vs_params(runs: list[dict], cmap: dict[str, str], front: list[str]) -> bytes | None:
    """Eval perplexity after training against trainable parameters (log x), one point per
    method (seeds averaged), Pareto line."""
    pts = {g: v for g, v in param_points(runs).items() if v[0] > 0}
    if not pts:
        return None
    fig = _figure(9, 4.8)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    for r in runs:
        ppl = num((r.get("after") or {}).get("perplexity"))
        if r.get("method") == "base" and ppl is not None:
            ax.axhline(
                ppl,
                color=BASE_COLOR,
                ls=":",
                lw=1.2,
                label=f"{r['name']} model (untrained): {ppl:.3g}",
            )
    fr = sorted(pts[n] for n in front if n in pts)
    if len(fr) > 1:
        ax.plot(
            [p[0] for p in fr],
            [p[1] for p in fr],
            color="#444444",
            lw=1.2,
            ls="--",
            drawstyle="steps-post",
            zorder=1,
            label="Pareto frontier",
        )
    for n, (p, ppl) in pts.items():
        on = n in front
        ax.scatter(
            [p],
            [ppl],
            s=70 if on else 45,
            color=cmap[n],
            zorder=3,
            edgecolors="black" if on else "none",
            linewidths=1.2,
        )
    xs = [p for p, _ in pts.values()]
    ax.set_xlim(min(xs) / 3, max(xs) * 3)
    ax.get_ylim()  # settle the autoscaled view before placing labels
    labels = {n: n + (" ★" if n in front and len(pts) > 1 else "") for n in pts}
    _place_labels(fig, ax, pts, labels)
    ax.set(
        xlabel="trainable parameters (log scale)",
        ylabel="eval perplexity after training",
        title="Perplexity against trainable parameters (★ = Pareto set)",
    )
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", frameon=False)
    return _png(fig)


@styled
def efficiency_curve(runs: list[dict], cmap: dict[str, str], front: list[str]) -> bytes | None:
    """The parameter-efficiency curve: eval perplexity with its 95% bootstrap interval
    against trainable parameters and against training wall time, one line per method
    through its swept values (``compare --sweep``; one point per method without a
    sweep), and the Pareto frontier over all points."""
    from .stats import perplexity_interval

    by: dict[str, list[tuple]] = {}
    for r in runs:
        a = r.get("after") or {}
        p, y = num((r.get("params") or {}).get("trainable")), num(a.get("perplexity"))
        if not p or y is None or r.get("method") == "base":
            continue
        ci = perplexity_interval(a.get("record_nll") or [], a.get("record_tokens") or [])
        by.setdefault(r.get("method") or r["name"], []).append(
            (p, num(r.get("train_seconds")), y, *(ci or (y, y)), r["name"])
        )
    if sum(len(v) for v in by.values()) < 2:
        return None
    for method, rs in by.items():  # seeds of one swept value: their mean, widest interval
        pts = {}
        for q in rs:
            pts.setdefault(q[0], []).append(q)
        by[method] = []
        for p, qs in sorted(pts.items()):
            y = sum(q[2] for q in qs) / len(qs)
            secs = [q[1] for q in qs if q[1] is not None]
            # (a percentile interval need not contain the estimate: clamp the bars)
            by[method].append(
                (
                    p,
                    sum(secs) / len(secs) if secs else None,
                    y,
                    max(0.0, y - min(q[3] for q in qs)),
                    max(0.0, max(q[4] for q in qs) - y),
                    qs[0][5],
                )
            )
    fig = _figure(12, 4.8)
    axes = fig.subplots(1, 2, sharey=True)
    for method, pts in by.items():
        color = cmap[pts[0][5]]
        for ax, col in zip(axes, (0, 1)):
            row = sorted((q for q in pts if q[col] is not None), key=lambda q: q[col])
            if row:
                ax.errorbar(
                    [q[col] for q in row],
                    [q[2] for q in row],
                    yerr=[[q[3] for q in row], [q[4] for q in row]],
                    color=color,
                    marker="o",
                    ms=4,
                    lw=1.4,
                    capsize=3,
                    label=method,
                )
    pts = param_points(runs)
    fr = sorted(pts[n] for n in front if n in pts)
    if len(fr) > 1:
        axes[0].plot(
            [p[0] for p in fr],
            [p[1] for p in fr],
            color="#444444",
            lw=1.2,
            ls="--",
            drawstyle="steps-post",
            zorder=1,
            label="Pareto frontier",
        )
    for n in front:
        if n in pts:
            axes[0].scatter(
                [pts[n][0]],
                [pts[n][1]],
                s=80,
                facecolors="none",
                edgecolors="black",
                linewidths=1.2,
                zorder=4,
            )
    axes[0].set_xscale("log")
    axes[0].xaxis.set_minor_formatter(NullFormatter())  # minor labels would overlap
    axes[0].set(
        xlabel="trainable parameters (log scale)",
        ylabel="eval perplexity",
        title="Perplexity against trainable parameters (○ = Pareto set)",
    )
    axes[1].set(xlabel="training wall time (s)", title="Perplexity against training time")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _png(fig)


# Label offsets (pixels) tried in order: right-above, right-below, left-above, ...
OFFSETS = [
    (7, 4, "left", "bottom"),
    (7, -4, "left", "top"),
    (-7, 4, "right", "bottom"),
    (-7, -4, "right", "top"),
    (7, 18, "left", "bottom"),
    (7, -18, "left", "top"),
    (-7, 18, "right", "bottom"),
    (-7, -18, "right", "top"),
    (7, 32, "left", "bottom"),
    (7, -32, "left", "top"),
]


def _place_labels(
    fig: Figure, ax, pts: dict[str, tuple[float, float]], labels: dict[str, str]
) -> None:
    """Annotate each point where its label overlaps no marker and no earlier label
    (greedy, on an estimate of the axes' size in pixels; text ~7.5 px per character)."""
    to_axes = ax.transScale + ax.transLimits
    w_px, h_px = fig.get_figwidth() * DPI * 0.85, fig.get_figheight() * DPI * 0.78
    at = {n: to_axes.transform(xy) * (w_px, h_px) for n, xy in pts.items()}
    taken = [(x - 6, y - 6, x + 6, y + 6) for x, y in at.values()]
    for n in sorted(pts, key=lambda k: pts[k]):
        x, y = at[n]
        w, h = 7.5 * len(labels[n]) + 2, 14
        choice = OFFSETS[0]
        for dx, dy, ha, va in OFFSETS:
            x0 = x + dx if ha == "left" else x + dx - w
            y0 = y + dy if va == "bottom" else y + dy - h
            box = (x0, y0, x0 + w, y0 + h)
            inside = 0 <= box[0] and box[2] <= w_px and 0 <= box[1] and box[3] <= h_px
            if inside and not any(
                box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken
            ):
                choice = (dx, dy, ha, va)
                break
        dx, dy, ha, va = choice
        x0 = x + dx if ha == "left" else x + dx - w
        y0 = y + dy if va == "bottom" else y + dy - h
        taken.append((x0, y0, x0 + w, y0 + h))
        ax.annotate(
            labels[n],
            pts[n],
            xytext=(dx * 72 / DPI, dy * 72 / DPI),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=9,
        )


@styled
def _bars(
    items: list[tuple[str, float, str]], title: str, xlabel: str, fmt, rows: int
) -> bytes | None:
    if not items:
        return None
    fig = _figure(6.2, 0.45 * max(rows, len(items)) + 1.4)
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
    return _png(fig)


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
        fig = _figure(min(max(3 + 0.3 * len(layers), 6.5), 12), 1.6 + 0.36 * len(kinds))
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
        return _png(fig)
    names = list(vals)
    fig = _figure(9, min(0.22 * len(names) + 1.2, 30))
    ax = fig.add_subplot()
    ax.barh(names[::-1], [vals[n] for n in names][::-1], color=PALETTE[0])
    ax.tick_params(axis="y", labelsize=7)
    ax.set(title=title, xlabel=key)
    return _png(fig)
