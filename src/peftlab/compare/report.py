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

from ..core.atomic import atomic_write_bytes
from ..tracking import track_comparison
from . import benchmarks, forgetting, groups, plots, plots_params, seeds
from .fmt import DASH, fmt_bytes, fmt_count, fmt_pct, fmt_seconds, fmt_share, fmt_value  # noqa: F401
from .render import render_html, render_markdown, summary_text
from .stats import perplexity_interval, wilson
from .verdicts import findings

RESULTS = "results.jsonl"
COLUMNS = [
    "Method",
    "Status",
    "Trainable params",
    "Adapter size",
    "Peak memory",
    "Wall time",
    "Tokens/s",
    "Eval loss",
    "Perplexity",
    "Exact match",
    "Merge check",
]
num = groups.num


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
    if mem != DASH and num(run.get("predicted_memory_bytes")):  # `peftlab plan`'s figure
        mem += f"; predicted {fmt_bytes(run['predicted_memory_bytes'])}"
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
    name = (
        run["name"]
        if run.get("method") in (None, run["name"])
        else f"{run['name']} ({run['method']})"
    )
    cells = [
        name,
        str(run.get("status") or "?"),
        trainable,
        fmt_bytes(run.get("adapter_bytes")) if not base else "no adapter",
        mem,
        fmt_seconds(run.get("wall_seconds")),
        fmt_value(run.get("tokens_per_s"), 0),
        _before_after(run, "eval_loss", lambda x: f"{x:.3f}"),
        ppl,
        em,
        merge,
    ]
    if base and run.get("status") == "ok":
        cells = [c if c != DASH else "n/a" for c in cells]
    return dict(zip(COLUMNS, cells))


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


def _c(sec, key, default=None):
    """A getter of one config value of a run (None for a row without a config)."""
    return lambda r: (
        ((r.get("config") or {}).get(sec) or {}).get(key, default) if r.get("config") else None
    )


def _steps(r: dict) -> str | None:
    t = (r.get("config") or {}).get("train") or {}
    if not t:
        return None
    return f"{t['max_steps']} steps" if t.get("max_steps") else f"{t.get('epochs')} epochs"


def settings(runs: list[dict]) -> list[tuple[str, str]]:
    """The settings every run shares, once ("varies: ..." where they differ)."""
    trained = [r for r in runs if r.get("method") != "base"] or runs
    # The base row's count; else the smallest total (totals may include the adapter).
    totals = [
        t
        for r in runs
        if r.get("method") == "base"
        if (t := num((r.get("params") or {}).get("total")))
    ] or [t for r in runs if (t := num((r.get("params") or {}).get("total")))]
    rows = [
        (
            "Model",
            _common(
                runs,
                lambda r: (
                    (_c("model", "name")(r) or "embedded SmolLM2-135M-Instruct")
                    if r.get("config")
                    else None
                ),
            ),
        ),
        ("Model parameters", fmt_count(min(totals)) if totals else DASH),
        ("Base weights dtype", _common(runs, _c("model", "dtype"))),
        (
            "Dataset",
            _common(
                runs,
                lambda r: (_c("data", "dataset")(r) or "bundled set") if r.get("config") else None,
            ),
        ),
        ("Data format", _common(runs, lambda r: (r.get("data") or {}).get("format"))),
        ("Prompt format", _common(runs, _prompt_label)),
        ("Max length", _common(runs, _c("data", "max_length"))),
        ("Budget", _common(trained, _steps)),
        (
            "Batch size × grad accum",
            _common(
                trained,
                lambda r: (
                    f"{_c('train', 'batch_size')(r)} × {_c('train', 'grad_accum')(r)}"
                    if r.get("config")
                    else None
                ),
            ),
        ),
        ("Learning rate", _common(trained, _c("train", "lr"))),
        ("Seed", _common(runs, _c("train", "seed"))),
        ("Mixed precision", _common(trained, _c("train", "mixed_precision"))),
        ("Eval every", _common(trained, _c("train", "eval_every"))),
        ("General set (forgetting)", _common(runs, lambda r: r.get("general_dataset"))),
        ("Standard benchmarks (lm-eval)", _common(runs, lambda r: r.get("lm_eval_key"))),
    ]
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
    keys = list(
        dict.fromkeys(
            [
                "python",
                "torch",
                "transformers",
                "accelerate",
                "cpu",
                "threads",
                "gpu",
                *(k for r in runs for k in r.get("env") or {}),
            ]
        )
    )
    rows = [(k, _common(runs, lambda r, k=k: (r.get("env") or {}).get(k))) for k in keys]
    finished = sorted(str(r["finished_at"]) for r in runs if r.get("finished_at"))
    if finished:
        rows.append(
            ("finished", finished[0] if len(finished) == 1 else f"{finished[0]} … {finished[-1]}")
        )
    return [(k, v) for k, v in rows if v != DASH]


def _charts(ok: list[dict], cmap: dict[str, str], front: list[str]) -> list[tuple]:
    """(slug, title, PNG bytes or None) of every chart, the per-run rank maps last."""
    charts: list[tuple[str, str, bytes | None]] = [
        ("loss", "Training and eval loss", plots.loss_curves(ok, cmap)),
        ("compute", "Perplexity at equal compute", plots.equal_compute(ok, cmap)),
        (
            "efficiency",
            "Parameter-efficiency curve",
            plots_params.efficiency_curve(ok, cmap, front),
        ),
        (
            "pareto",
            "Perplexity against trainable parameters",
            plots_params.perplexity_vs_params(ok, cmap, front),
        ),
        ("memory", "Peak memory", plots.memory_bars(ok, cmap, fmt_bytes)),
        ("throughput", "Throughput", plots.throughput_bars(ok, cmap)),
    ]
    for r in ok:
        for key, ranks in sorted((r.get("layer_ranks") or {}).items()):
            if isinstance(ranks, dict) and ranks:
                slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{r['name']}_{key}")
                while any(c[0] == f"ranks_{slug}" for c in charts):
                    slug += "_"
                charts.append(
                    (
                        f"ranks_{slug}",
                        f"{r['name']}: {key}",
                        plots.layer_ranks(r["name"], key, ranks),
                    )
                )
    return charts


def write_report(output_dir: str | Path) -> dict:
    """Write ``report.md``, ``report.html`` and ``report_*.png`` into ``output_dir`` from
    its ``results.jsonl``; return the summary (table rows, findings, paths, text)."""
    out = Path(output_dir)
    src = out / RESULTS
    if not src.is_file():
        raise FileNotFoundError(f"{src}: not found (run `peftlab compare` first)")
    runs, bad = load_results(src)
    ok = [r for r in runs if r.get("status") == "ok"]
    cmap = groups.colors(runs)
    found = findings(runs)
    front = next((f["winners"] for f in found if f["key"] == "pareto"), [])
    charts = _charts(ok, cmap, front)
    images = [(f"report_{slug}.png", title, png) for slug, title, png in charts if png]
    for fname, _, png in images:
        atomic_write_bytes(out / fname, png)
    keep = {f for f, _, _ in images}
    for stale in out.glob("report_*.png"):
        if stale.name not in keep:
            stale.unlink(missing_ok=True)
    summary = {
        "rows": [table_row(r) for r in runs],
        "columns": COLUMNS,
        "findings": found,
        "forgetting": forgetting.table(runs),
        "forgetting_columns": forgetting.COLUMNS,
        "benchmarks": benchmarks.table(runs),
        "benchmarks_columns": benchmarks.COLUMNS,
        "seeds": seeds.table(runs),
        "seeds_columns": seeds.COLUMNS,
        "failed": [
            {"name": r["name"], "method": r.get("method"), "error": r.get("error")}
            for r in runs
            if r.get("status") != "ok"
        ],
        "settings": settings(runs),
        "method_options": method_options(runs),
        "environment": environment(runs),
        "skipped_lines": bad,
        "images": [{"file": f, "title": t} for f, t, _ in images],
        "report_md": str(out / "report.md"),
        "report_html": str(out / "report.html"),
    }
    atomic_write_bytes(out / "report.md", render_markdown(summary).encode())
    uris = ["data:image/png;base64," + base64.b64encode(p).decode() for _, _, p in images]
    atomic_write_bytes(out / "report.html", render_html(summary, uris).encode())
    summary["text"] = summary_text(summary)
    # A tracked comparison: the report and its table to the experiment's parent run.
    track_comparison(out, [out / "report.md", out / "report.html", src])
    return summary
