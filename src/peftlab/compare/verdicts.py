"""Quality verdicts that survive noise: the best method by perplexity or exact match is
named only when the 95% interval of its difference to the runner-up excludes zero
(paired bootstrap over eval records, and over seeds when there are several); otherwise
the verdict says *tie* and prints the interval."""

from __future__ import annotations

from .stats import paired_difference, spread, wilson

_KINDS = {
    "perplexity": {"key": "best_perplexity", "title": "Best perplexity", "lower": True},
    "exact": {"key": "best_exact_match", "title": "Best exact match", "lower": False},
}


def _method(r: dict) -> str:
    return r.get("method") or r["name"]


def groups(runs: list[dict]) -> dict[str, list[dict]]:
    """Finished runs by method (several when the comparison ran several seeds)."""
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(_method(r), []).append(r)
    return out


def _value(r: dict, kind: str) -> float | None:
    a = r.get("after") or {}
    v = a.get("perplexity" if kind == "perplexity" else "exact_match")
    return float(v) if isinstance(v, (int, float)) else None


def _samples(rs: list[dict], kind: str) -> dict:
    afters = [r.get("after") or {} for r in rs]
    if kind == "perplexity":
        return {"nll": [a.get("record_nll") for a in afters if a.get("record_nll")],
                "tokens": [a.get("record_tokens") for a in afters if a.get("record_nll")]}
    return {"hits": [[float(h) for h in a["exact_hits"]] for a in afters
                     if a.get("exact_hits")]}


def _show(kind: str, v: float) -> str:
    return f"{v:.3f}" if kind == "perplexity" else f"{v:.1%}"


def _diff(kind: str, d: float) -> str:
    return f"{d:+.3f}" if kind == "perplexity" else f"{d * 100:+.1f} points"


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
    by = {m: rs for m, rs in groups(runs).items()
          if [v for r in rs if (v := _value(r, kind)) is not None]}
    if not by:
        return None
    mean = {m: sum(_value(r, kind) for r in rs if _value(r, kind) is not None)
            / len([r for r in rs if _value(r, kind) is not None]) for m, rs in by.items()}
    order = sorted(mean, key=lambda m: mean[m] if spec["lower"] else -mean[m])
    best = order[0]
    what = "perplexity" if kind == "perplexity" else "exact match"
    base = {"key": spec["key"], "title": spec["title"], "value": mean[best],
            "interval": None}
    if len(order) == 1:
        return {**base, "winners": [best], "runner_up": None,
                "text": f"{best}: {what} {describe(by[best], kind)}; no other method has "
                        f"this figure to compare with.{extra}"}
    runner = order[1]
    iv = paired_difference(_samples(by[best], kind), _samples(by[runner], kind), kind)
    figures = f"{best} {describe(by[best], kind)}, {runner} {describe(by[runner], kind)}"
    if iv is None:  # results from before per-record scores: equal values tie, no interval
        winners = [m for m in order if abs(mean[m] - mean[best]) <= 1e-12]
        runner = next((m for m in order if m not in winners), None)
        figures = ", ".join(f"{m} {describe(by[m], kind)}" for m in order[:len(winners) + 1])
        lead = (f"{best} has the best {what}" if len(winners) == 1
                else f"{', '.join(winners[:-1])} and {winners[-1]} tie on {what}")
        text = f"{lead} ({figures}); no per-record scores to put an interval on it."
    else:
        n = len(_samples(by[best], kind)["nll" if kind == "perplexity" else "hits"][0])
        seeds = max(len(by[best]), len(by[runner]))
        over = f"{n} eval records" + (f" and {seeds} seeds" if seeds > 1 else "")
        ci = (f"difference {_diff(kind, iv.estimate)}, 95% interval {_diff(kind, iv.low)} to "
              f"{_diff(kind, iv.high)} (paired bootstrap over {over})")
        if iv.excludes_zero:
            winners = [best]
            text = f"{best} has the best {what}: {figures}; {ci}."
        else:
            winners = [best, runner]
            text = (f"{best} and {runner} tie on {what}: {figures}; {ci}, which contains "
                    "zero, so the data do not tell them apart.")
        base["interval"] = [iv.estimate, iv.low, iv.high]
    return {**base, "winners": winners, "runner_up": runner, "text": text + extra}
