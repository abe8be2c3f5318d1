"""The comparison report: ``results.jsonl`` -> ``report.md`` + ``report.html`` + charts.

``write_report(output_dir)`` reads one JSON line per run (the last line of a name wins,
so a rerun replaces its row), and writes, each atomically:

* ``report_*.png``: the charts, beside the Markdown report that links them;
* ``report.md``: table, charts, "which method when", failed runs, settings, environment;
* ``report.html``: the same as one self-contained page (charts as data: URIs, inline CSS,
  no script and no network), readable from disk.

Nothing here knows a method by name: a method added later appears with no code change,
and every ``layer_ranks`` entry of every run gets its own chart.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_write_bytes
from . import plots
from .stats import perplexity_interval, wilson
from .verdicts import quality_finding
from .render import render_html, render_markdown, summary_text

RESULTS = "results.jsonl"
DASH = "—"
COLUMNS = ["Method", "Status", "Trainable params", "Adapter size", "Peak memory", "Wall time",
           "Tokens/s", "Eval loss", "Perplexity", "Exact match", "Merge check"]
num = plots.num


def load_results(path: Path) -> tuple[list[dict], int]:
    """Runs in order of first appearance, each the LAST line with its name; plus the
    number of unreadable lines (e.g. a line cut short by an interrupted write)."""
    runs: dict[str, dict] = {}
    bad = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(run, dict) or not (run.get("name") or run.get("method")):
            bad += 1
            continue
        run["name"] = str(run.get("name") or run.get("method"))
        runs[run["name"]] = run
    ordered = list(runs.values())
    return sorted(ordered, key=lambda r: r.get("method") != "base"), bad


# ---------------------------------------------------------------- formatting
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


def _before_after(run: dict, key: str, fmt) -> str:
    b, a = (num((run.get(s) or {}).get(key)) for s in ("before", "after"))
    if a is None:
        return fmt(b) if b is not None else DASH
    if b is None or run.get("method") == "base":
        return fmt(a)
    return f"{fmt(b)} → {fmt(a)}"


def table_row(run: dict) -> dict[str, str]:
    """One run's table cells as text; ``—`` where a figure is missing."""
    base = run.get("method") == "base"
    params = run.get("params") or {}
    after = run.get("after") or {}
    trainable = fmt_count(params.get("trainable"))
    if trainable != DASH:
        trainable += f" ({fmt_share(params.get('share_pct'))})"
    mem = fmt_bytes(run.get("peak_memory_bytes"))
    if mem != DASH and run.get("memory_kind"):
        mem += f" ({run['memory_kind']})"
    em = _before_after(run, "exact_match", lambda x: f"{x:.1%}")
    if em != DASH and after.get("exact_n"):
        n = after["exact_n"]
        lo, hi = wilson(round(num(after.get("exact_match")) * n), n)
        em += f" (n={n}, 95% CI {lo:.0%}–{hi:.0%})"
    elif em == DASH and run.get("status") == "ok" and after:
        em = "n/a (no checkable records)"
    ppl = _before_after(run, "perplexity", fmt_value)
    ci = perplexity_interval(after.get("record_nll") or [], after.get("record_tokens") or [])
    if ci is not None:
        ppl += f" [{fmt_value(ci[0])}–{fmt_value(ci[1])}]"
    b, a = num((run.get("before") or {}).get("perplexity")), num(after.get("perplexity"))
    if not base and a is not None and b:
        ppl += f" ({(a - b) / b * 100:+.1f}%)"
    mc = run.get("merge_check") or {}
    diff, tol = num(mc.get("max_logit_diff")), num(mc.get("tolerance"))
    merge = DASH
    if diff is not None:
        merge = f"{diff:.1e}"
        if tol is not None:
            ok = mc["ok"] if "ok" in mc else diff <= tol  # the run's own (relative) verdict
            merge = f"{'✓' if ok else '✗'} {merge} (tol {tol:.0e})"
    elif mc.get("skipped"):  # e.g. "nothing to merge" (full fine-tuning); reason up to ';'
        merge = f"skipped: {str(mc['skipped']).split(';')[0]}"
    name = run["name"] if run.get("method") in (None, run["name"]) \
        else f"{run['name']} ({run['method']})"
    cells = [name, str(run.get("status") or "?"), trainable,
             fmt_bytes(run.get("adapter_bytes")) if not base else "no adapter", mem,
             fmt_seconds(run.get("wall_seconds")), fmt_value(run.get("tokens_per_s"), 0),
             _before_after(run, "eval_loss", lambda x: f"{x:.3f}"), ppl, em, merge]
    if base and run.get("status") == "ok":
        cells = [c if c != DASH else "n/a" for c in cells]
    return dict(zip(COLUMNS, cells))


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
    return {"key": key, "title": title, "winners": winners, "value": best,
            "runner_up": runner[0] if runner else None, "text": text + extra}


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
    after = {r["name"]: r.get("after") or {} for r in ok}

    def cands(get):
        return [(r["name"], v) for r in ok if (v := num(get(r))) is not None]

    base_ppl = num(((base or {}).get("after") or {}).get("perplexity"))
    out = [quality_finding(
        ok, "perplexity", f" The untrained base model scores {fmt_value(base_ppl)}."
        if base_ppl else "")]
    share = {r["name"]: (r.get("params") or {}).get("share_pct") for r in ok}
    out.append(_finding(
        "fewest_params", "Fewest trainable parameters",
        cands(lambda r: (r.get("params") or {}).get("trainable")), True, fmt_count,
        lambda n, v: f"{n} trains {fmt_count(v)} parameters" + (
            f" ({fmt_share(share[n])} of the model)" if num(share[n]) is not None else ""),
        lambda b, o: _times(o, b, "fewer than", _less(b, o, "fewer"))))
    kinds = sorted({str(r.get("memory_kind")) for r in ok if r.get("memory_kind")})
    out.append(_finding(
        "lowest_memory", "Lowest peak memory", cands(lambda r: r.get("peak_memory_bytes")),
        True, fmt_bytes, lambda n, v: f"{n} peaked at {fmt_bytes(v)}",
        lambda b, o: _less(b, o, "less"),
        f" Caution: memory was measured as {' and '.join(kinds)}, which do not compare."
        if len(kinds) > 1 else ""))
    tps = lambda v: f"{fmt_value(v, 0)} tokens/s"  # noqa: E731
    out.append(_finding(
        "fastest", "Fastest training", cands(lambda r: r.get("tokens_per_s")), False, tps,
        lambda n, v: f"{n} trained at {tps(v)}",
        lambda b, o: _times(b, o, "the throughput of",
                            f"{fmt_pct((b - o) / o * 100)} faster than" if o else "faster than")))
    em = cands(lambda r: after[r["name"]].get("exact_match"))
    if em:
        out.append(quality_finding(ok, "exact"))
    elif ok:
        out.append({"key": "best_exact_match", "title": "Exact match", "winners": [],
                    "value": None, "runner_up": None,
                    "text": "No exact-match figures: the eval set has no exactly checkable "
                            "records, so perplexity is the quality measure here."})
    out.append(_pareto(ok))
    return [f for f in out if f]


def _pareto(ok: list[dict]) -> dict | None:
    pts = {r["name"]: (p, y) for r in ok
           if (p := num((r.get("params") or {}).get("trainable"))) is not None
           and (y := num((r.get("after") or {}).get("perplexity"))) is not None}
    if not pts:
        return None
    front = sorted(plots.pareto_set(pts), key=lambda n: pts[n])
    desc = [f"{n} ({fmt_count(pts[n][0])} params, perplexity {fmt_value(pts[n][1])})"
            for n in front]
    text = (f"{_names(desc)} {'is' if len(front) == 1 else 'are'} Pareto-optimal: no other "
            "method has both fewer trainable parameters and lower perplexity.")
    if len(pts) == 1:
        text += " Only one method finished, so there is no trade-off to show."
    elif len(front) == len(pts):
        text += " No method is dominated: each buys lower perplexity with more parameters."
    for n, (p, y) in pts.items():
        if n in front:
            continue
        by = min((o for o in front if pts[o][0] <= p and pts[o][1] <= y), key=lambda o: pts[o][1])
        text += (f" {n} is dominated by {by} ({fmt_count(pts[by][0])} vs {fmt_count(p)} "
                 f"parameters, perplexity {fmt_value(pts[by][1])} vs {fmt_value(y)}).")
    return {"key": "pareto", "title": "Pareto set", "winners": front, "value": None,
            "runner_up": None, "text": text}


# ---------------------------------------------------------------- settings
def _common(runs, get) -> str:
    vals = {}
    for r in runs:
        v = get(r)
        if v is not None:
            vals.setdefault(str(v), []).append(r["name"])
    if not vals:
        return DASH
    if len(vals) == 1:
        return next(iter(vals))
    return "varies: " + "; ".join(f"{v} ({', '.join(ns)})" for v, ns in vals.items())


def settings(runs: list[dict]) -> list[tuple[str, str]]:
    """The settings every run shares, once ("varies: ..." where they differ)."""
    def c(sec, key, default=None):
        return lambda r: ((r.get("config") or {}).get(sec) or {}).get(key, default) \
            if r.get("config") else None

    def steps(r):
        t = (r.get("config") or {}).get("train") or {}
        if not t:
            return None
        return f"{t['max_steps']} steps" if t.get("max_steps") else f"{t.get('epochs')} epochs"
    trained = [r for r in runs if r.get("method") != "base"] or runs
    # The base row's count; else the smallest total (totals may include the adapter).
    totals = [t for r in runs if r.get("method") == "base"
              if (t := num((r.get("params") or {}).get("total")))] or \
        [t for r in runs if (t := num((r.get("params") or {}).get("total")))]
    rows = [("Model", _common(runs, lambda r: (c("model", "name")(r) or "embedded "
                                                 "SmolLM2-135M-Instruct") if r.get("config")
                              else None)),
            ("Model parameters", fmt_count(min(totals)) if totals else DASH),
            ("Base weights dtype", _common(runs, c("model", "dtype"))),
            ("Dataset", _common(runs, lambda r: (c("data", "dataset")(r) or "bundled set")
                                if r.get("config") else None)),
            ("Data format", _common(runs, lambda r: (r.get("data") or {}).get("format"))),
            ("Prompt format", _common(runs, _prompt_label)),
            ("Max length", _common(runs, c("data", "max_length"))),
            ("Budget", _common(trained, steps)),
            ("Batch size × grad accum", _common(trained, lambda r: (
                f"{c('train', 'batch_size')(r)} × {c('train', 'grad_accum')(r)}"
                if r.get("config") else None))),
            ("Learning rate", _common(trained, c("train", "lr"))),
            ("Seed", _common(runs, c("train", "seed"))),
            ("Mixed precision", _common(trained, c("train", "mixed_precision"))),
            ("Eval every", _common(trained, c("train", "eval_every")))]
    return [(k, v) for k, v in rows if v != DASH]


def _prompt_label(r: dict) -> str | None:
    d = r.get("data") or {}
    if d.get("prompt_format") != "chat":
        return d.get("prompt_format")
    return f"chat template ({d.get('chat_template')}), loss on {d.get('train_on')}"


def method_options(runs: list[dict]) -> list[tuple[str, str]]:
    out = []
    for r in runs:
        opts = (r.get("config") or {}).get("adapter")
        if r.get("method") != "base" and opts:
            out.append((r["name"], ", ".join(f"{k}={v}" for k, v in sorted(opts.items()))))
    return out


def environment(runs: list[dict]) -> list[tuple[str, str]]:
    keys = list(dict.fromkeys(["python", "torch", "transformers", "accelerate", "cpu",
                               "threads", "gpu", *(k for r in runs for k in r.get("env") or {})]))
    rows = [(k, _common(runs, lambda r, k=k: (r.get("env") or {}).get(k))) for k in keys]
    finished = sorted(str(r["finished_at"]) for r in runs if r.get("finished_at"))
    if finished:
        rows.append(("finished", finished[0] if len(finished) == 1
                     else f"{finished[0]} … {finished[-1]}"))
    return [(k, v) for k, v in rows if v != DASH]


def write_report(output_dir: str | Path) -> dict:
    """Write ``report.md``, ``report.html`` and ``report_*.png`` into ``output_dir`` from
    its ``results.jsonl``; return the summary (table rows, findings, paths, text)."""
    out = Path(output_dir)
    src = out / RESULTS
    if not src.is_file():
        raise FileNotFoundError(f"{src}: not found (run `peftlab compare` first)")
    runs, bad = load_results(src)
    ok = [r for r in runs if r.get("status") == "ok"]
    cmap = plots.colors(runs)
    found = findings(runs)
    front = next((f["winners"] for f in found if f["key"] == "pareto"), [])
    charts: list[tuple[str, str, bytes | None]] = [
        ("loss", "Training and eval loss", plots.loss_curves(ok, cmap)),
        ("pareto", "Perplexity against trainable parameters",
         plots.perplexity_vs_params(ok, cmap, front)),
        ("memory", "Peak memory", plots.memory_bars(ok, cmap, fmt_bytes)),
        ("throughput", "Throughput", plots.throughput_bars(ok, cmap))]
    for r in ok:
        for key, ranks in sorted((r.get("layer_ranks") or {}).items()):
            if isinstance(ranks, dict) and ranks:
                slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{r['name']}_{key}")
                while any(c[0] == f"ranks_{slug}" for c in charts):
                    slug += "_"
                charts.append((f"ranks_{slug}", f"{r['name']}: {key}",
                               plots.layer_ranks(r["name"], key, ranks)))
    images = [(f"report_{slug}.png", title, png) for slug, title, png in charts if png]
    for fname, _, png in images:
        atomic_write_bytes(out / fname, png)
    keep = {f for f, _, _ in images}
    for stale in out.glob("report_*.png"):
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    summary = {
        "rows": [table_row(r) for r in runs], "columns": COLUMNS, "findings": found,
        "failed": [{"name": r["name"], "method": r.get("method"), "error": r.get("error")}
                   for r in runs if r.get("status") != "ok"],
        "settings": settings(runs), "method_options": method_options(runs),
        "environment": environment(runs), "skipped_lines": bad,
        "images": [{"file": f, "title": t} for f, t, _ in images],
        "report_md": str(out / "report.md"), "report_html": str(out / "report.html")}
    atomic_write_bytes(out / "report.md", render_markdown(summary).encode())
    uris = ["data:image/png;base64," + base64.b64encode(p).decode() for _, _, p in images]
    atomic_write_bytes(out / "report.html", render_html(summary, uris).encode())
    summary["text"] = summary_text(summary)
    return summary


