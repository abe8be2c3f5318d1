"""The report's "which method when": one finding per question (quality, parameters,
memory, speed, the parameter-efficiency frontier), computed from the runs.

Quality verdicts survive noise: the best method by perplexity or exact match is named
only when the 95% interval of its difference to the runner-up excludes zero (paired
bootstrap over eval records, and over seeds when there are several); otherwise the
verdict says *tie* and prints the interval. With several seeds every verdict compares
methods, not runs: a method's figure is its seeds' mean, shown with their spread."""

from __future__ import annotations

from .fmt import fmt_bytes, fmt_count, fmt_pct, fmt_share, fmt_value
from .groups import group_means, group_of, num, param_points, pareto_set
from .stats import paired_difference, spread, wilson

_KINDS = {
    "perplexity": {"key": "best_perplexity", "title": "Best perplexity", "lower": True},
    "exact": {"key": "best_exact_match", "title": "Best exact match", "lower": False},
    # perplexity on the general set (compare --general-eval): lowest = forgot least
    "general": {"key": "least_forgetting", "title": "Least forgetting", "lower": True},
}


def _section(kind: str) -> str:
    return "general" if kind == "general" else "after"


def _metric(kind: str) -> str:
    return "exact" if kind == "exact" else "perplexity"  # general: a perplexity


def groups(runs: list[dict]) -> dict[str, list[dict]]:
    """Finished runs by method (several when the comparison ran several seeds)."""
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(group_of(r), []).append(r)
    return out


def _value(r: dict, kind: str) -> float | None:
    a = r.get(_section(kind)) or {}
    v = a.get("perplexity" if _metric(kind) == "perplexity" else "exact_match")
    return float(v) if isinstance(v, (int, float)) else None


def _samples(rs: list[dict], kind: str) -> dict:
    afters = [r.get(_section(kind)) or {} for r in rs]
    if _metric(kind) == "perplexity":
        return {
            "nll": [a.get("record_nll") for a in afters if a.get("record_nll")],
            "tokens": [a.get("record_tokens") for a in afters if a.get("record_nll")],
        }
    return {"hits": [[float(h) for h in a["exact_hits"]] for a in afters if a.get("exact_hits")]}


def _show(kind: str, v: float) -> str:
    return f"{v:.3f}" if _metric(kind) == "perplexity" else f"{v:.1%}"


def _diff(kind: str, d: float) -> str:
    return f"{d:+.3f}" if _metric(kind) == "perplexity" else f"{d * 100:+.1f} points"


def describe(rs: list[dict], kind: str) -> str:
    """A method's figure: the value, ± its spread over seeds, or (exact match, one run)
    its Wilson interval."""
    vals = [v for r in rs if (v := _value(r, kind)) is not None]
    s = spread(vals)
    if s is not None:
        return f"{_show(kind, s[0])} ± {_show(kind, s[1])} over {len(vals)} seeds"
    if kind == "exact":
        a = rs[0].get("after") or {}
        n = a.get("exact_n") or 0
        lo, hi = wilson(round(vals[0] * n), n)
        return f"{_show(kind, vals[0])} (95% CI {lo:.1%}–{hi:.1%}, n={n})"
    return _show(kind, vals[0])


def quality_finding(runs: list[dict], kind: str, extra: str = "") -> dict | None:
    spec = _KINDS[kind]
    by = {
        m: rs
        for m, rs in groups(runs).items()
        if [v for r in rs if (v := _value(r, kind)) is not None]
    }
    if not by:
        return None
    mean = {
        m: sum(_value(r, kind) for r in rs if _value(r, kind) is not None)
        / len([r for r in rs if _value(r, kind) is not None])
        for m, rs in by.items()
    }
    order = sorted(mean, key=lambda m: mean[m] if spec["lower"] else -mean[m])
    best = order[0]
    what = {
        "perplexity": "perplexity",
        "exact": "exact match",
        "general": "general-set perplexity (least forgetting)",
    }[kind]
    base = {"key": spec["key"], "title": spec["title"], "value": mean[best], "interval": None}
    if len(order) == 1:
        return {
            **base,
            "winners": [best],
            "runner_up": None,
            "text": f"{best}: {what} {describe(by[best], kind)}; no other method has "
            f"this figure to compare with.{extra}",
        }
    runner = order[1]
    iv = paired_difference(_samples(by[best], kind), _samples(by[runner], kind), _metric(kind))
    figures = f"{best} {describe(by[best], kind)}, {runner} {describe(by[runner], kind)}"
    if iv is None:  # results from before per-record scores: equal values tie, no interval
        winners = [m for m in order if abs(mean[m] - mean[best]) <= 1e-12]
        runner = next((m for m in order if m not in winners), None)
        figures = ", ".join(f"{m} {describe(by[m], kind)}" for m in order[: len(winners) + 1])
        lead = (
            f"{best} has the best {what}"
            if len(winners) == 1
            else f"{', '.join(winners[:-1])} and {winners[-1]} tie on {what}"
        )
        text = f"{lead} ({figures}); no per-record scores to put an interval on it."
    else:
        n = len(_samples(by[best], kind)["nll" if _metric(kind) == "perplexity" else "hits"][0])
        seeds = max(len(by[best]), len(by[runner]))
        over = f"{n} eval records" + (f" and {seeds} seeds" if seeds > 1 else "")
        ci = (
            f"difference {_diff(kind, iv.estimate)}, 95% interval {_diff(kind, iv.low)} to "
            f"{_diff(kind, iv.high)} (paired bootstrap over {over})"
        )
        if iv.excludes_zero:
            winners = [best]
            text = f"{best} has the best {what}: {figures}; {ci}."
        else:
            winners = [best, runner]
            text = (
                f"{best} and {runner} tie on {what}: {figures}; {ci}, which contains "
                "zero, so the data do not tell them apart."
            )
        base["interval"] = [iv.estimate, iv.low, iv.high]
    return {**base, "winners": winners, "runner_up": runner, "text": text + extra}


# ---------------------------------------------------------------- findings
def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= 1e-4 * max(abs(a), abs(b))


def _names(ns: list[str]) -> str:
    return ns[0] if len(ns) == 1 else ", ".join(ns[:-1]) + " and " + ns[-1]


def _best(cands: list[tuple[str, float]], lower: bool):
    """(winners, best value, runner-up or None); ties share the win."""
    order = sorted(cands, key=lambda t: t[1] if lower else -t[1])
    best = order[0][1]
    winners = [n for n, v in order if _close(v, best)]
    rest = [t for t in order if t[0] not in winners]
    return winners, best, (rest[0] if rest else None)


def _finding(key, title, cands, lower, show, lead, compare, extra=""):
    """``lead(name, value)``: the winner's clause; ``compare(best, other)``: the phrase
    before the runner-up's name ("3.0% lower than")."""
    if not cands:
        return None
    winners, best, runner = _best(cands, lower)
    if len(winners) > 1:
        text = f"{_names(winners)} tie: each {lead(winners[0], best).split(' ', 1)[1]}"
    else:
        text = lead(winners[0], best)
    if runner is not None:
        text += f", {compare(best, runner[1])} {runner[0]} ({show(runner[1])})."
    elif len(winners) == 1:
        text += "; no other method has this figure to compare with."
    else:
        text += "."
    return {
        "key": key,
        "title": title,
        "winners": winners,
        "value": best,
        "runner_up": runner[0] if runner else None,
        "text": text + extra,
    }


def _less(best, other, word="lower"):
    return f"{fmt_pct((other - best) / other * 100)} {word} than" if other else f"{word} than"


def _times(big, small, word, fallback):
    if small and big / small >= 2:
        return f"{big / small:.1f}× {word}"
    return fallback


def findings(runs: list[dict]) -> list[dict]:
    """'Which method when', computed from these runs (base model excluded as a candidate)."""
    ok = [r for r in runs if r.get("status") == "ok" and r.get("method") != "base"]
    base = next((r for r in runs if r.get("method") == "base" and r.get("status") == "ok"), None)
    gs = groups(ok)  # one candidate per method (and swept value): seeds averaged
    base_ppl = num(((base or {}).get("after") or {}).get("perplexity"))
    out = [
        quality_finding(
            ok,
            "perplexity",
            f" The untrained base model scores {fmt_value(base_ppl)}." if base_ppl else "",
        ),
        _params_finding(ok, gs),
        _memory_finding(ok, gs),
        _speed_finding(ok, gs),
        _exact_finding(ok),
        _general_finding(ok, base),
        _pareto(param_points(ok)),
    ]
    return [f for f in out if f]


def _cands(ok: list[dict], get) -> list[tuple[str, float]]:
    return list(group_means(ok, get).items())


def _seeds_note(gs: dict[str, list[dict]], g: str, get, show) -> str:
    """After a group's figure: its spread over seeds, when it has several."""
    s = spread([v for r in gs[g] if (v := num(get(r))) is not None])
    return f" (mean of {len(gs[g])} seeds, ± {show(s[1])})" if s else ""


def _params_finding(ok: list[dict], gs: dict[str, list[dict]]) -> dict | None:
    share = {g: (rs[0].get("params") or {}).get("share_pct") for g, rs in gs.items()}
    return _finding(
        "fewest_params",
        "Fewest trainable parameters",
        _cands(ok, lambda r: (r.get("params") or {}).get("trainable")),
        True,
        fmt_count,
        lambda n, v: (
            f"{n} trains {fmt_count(v)} parameters"
            + (f" ({fmt_share(share[n])} of the model)" if num(share[n]) is not None else "")
        ),
        lambda b, o: _times(o, b, "fewer than", _less(b, o, "fewer")),
    )


def _memory_finding(ok: list[dict], gs: dict[str, list[dict]]) -> dict | None:
    mem = lambda r: r.get("peak_memory_bytes")  # noqa: E731
    kinds = sorted({str(r.get("memory_kind")) for r in ok if r.get("memory_kind")})
    return _finding(
        "lowest_memory",
        "Lowest peak memory",
        _cands(ok, mem),
        True,
        fmt_bytes,
        lambda n, v: f"{n} peaked at {fmt_bytes(v)}{_seeds_note(gs, n, mem, fmt_bytes)}",
        lambda b, o: _less(b, o, "less"),
        f" Caution: memory was measured as {' and '.join(kinds)}, which do not compare."
        if len(kinds) > 1
        else "",
    )


def _speed_finding(ok: list[dict], gs: dict[str, list[dict]]) -> dict | None:
    speed = lambda r: r.get("tokens_per_s")  # noqa: E731
    tps = lambda v: f"{fmt_value(v, 0)} tokens/s"  # noqa: E731
    return _finding(
        "fastest",
        "Fastest training",
        _cands(ok, speed),
        False,
        tps,
        lambda n, v: f"{n} trained at {tps(v)}{_seeds_note(gs, n, speed, tps)}",
        lambda b, o: _times(
            b,
            o,
            "the throughput of",
            f"{fmt_pct((b - o) / o * 100)} faster than" if o else "faster than",
        ),
    )


def _exact_finding(ok: list[dict]) -> dict | None:
    if _cands(ok, lambda r: (r.get("after") or {}).get("exact_match")):
        return quality_finding(ok, "exact")
    if not ok:
        return None
    return {
        "key": "best_exact_match",
        "title": "Exact match",
        "winners": [],
        "value": None,
        "runner_up": None,
        "text": "No exact-match figures: the eval set has no exactly checkable "
        "records, so perplexity is the quality measure here.",
    }


def _general_finding(ok: list[dict], base: dict | None) -> dict | None:
    if not any(r.get("general") for r in ok):
        return None
    g0 = num(((base or {}).get("general") or {}).get("perplexity"))
    return quality_finding(
        ok,
        "general",
        f" The base model scores {fmt_value(g0)} on the general set; a "
        "run above that lost ground outside its training data."
        if g0
        else "",
    )


def _pareto(pts: dict[str, tuple[float, float]]) -> dict | None:
    """The frontier over methods (seeds averaged): trainable parameters against
    perplexity."""
    if not pts:
        return None
    front = sorted(pareto_set(pts), key=lambda n: pts[n])
    desc = [
        f"{n} ({fmt_count(pts[n][0])} params, perplexity {fmt_value(pts[n][1])})" for n in front
    ]
    text = (
        f"{_names(desc)} {'is' if len(front) == 1 else 'are'} Pareto-optimal: no other "
        "method has both fewer trainable parameters and lower perplexity."
    )
    if len(pts) == 1:
        text += " Only one method finished, so there is no trade-off to show."
    elif len(front) == len(pts):
        text += " No method is dominated: each buys lower perplexity with more parameters."
    for n, (p, y) in pts.items():
        if n in front:
            continue
        by = min((o for o in front if pts[o][0] <= p and pts[o][1] <= y), key=lambda o: pts[o][1])
        text += (
            f" {n} is dominated by {by} ({fmt_count(pts[by][0])} vs {fmt_count(p)} "
            f"parameters, perplexity {fmt_value(pts[by][1])} vs {fmt_value(y)})."
        )
    return {
        "key": "pareto",
        "title": "Pareto set",
        "winners": front,
        "value": None,
        "runner_up": None,
        "text": text,
    }


# ---------------------------------------------------------------- settings
