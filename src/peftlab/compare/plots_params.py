"""The report's charts against trainable parameters: perplexity per method with the
Pareto set, and the parameter-efficiency curve through a sweep's values (against
parameters and against training time), with their labels placed clear of the points."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .groups import BASE_COLOR, num, param_points
from .plots import DPI, new_figure, styled, to_png


@styled
def perplexity_vs_params(runs: list[dict], cmap: dict[str, str], front: list[str]) -> bytes | None:
    """Eval perplexity after training against trainable parameters (log x), one point per
    method (seeds averaged), Pareto line."""
    pts = {g: v for g, v in param_points(runs).items() if v[0] > 0}
    if not pts:
        return None
    fig = new_figure(9, 4.8)
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
    _frontier(ax, pts, front)
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
    return to_png(fig)


@styled
def efficiency_curve(runs: list[dict], cmap: dict[str, str], front: list[str]) -> bytes | None:
    """The parameter-efficiency curve: eval perplexity with its 95% bootstrap interval
    against trainable parameters and against training wall time, one line per method
    through its swept values (``compare --sweep``; one point per method without a
    sweep), and the Pareto frontier over all points."""
    by = _sweep_points(runs)
    if sum(len(v) for v in by.values()) < 2:
        return None
    fig = new_figure(12, 4.8)
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
    _frontier(axes[0], pts, front)
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
    return to_png(fig)


def _sweep_points(runs: list[dict]) -> dict[str, list[tuple]]:
    """Per method, one point per swept value: (parameters, seconds, perplexity, lower and
    upper error bar, a run's name), its seeds' mean and their widest interval."""
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
    return by


def _frontier(ax, pts: dict[str, tuple[float, float]], front: list[str]) -> None:
    """The Pareto frontier through the points of ``front`` as a dashed staircase."""
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
