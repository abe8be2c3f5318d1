"""What fine-tuning cost elsewhere: every run, and the base, scored on a general set.

``peftlab compare --general-eval FILE|bundled`` evaluates the base model and each
finished run on a second instruction set that is not the training data (the bundled one:
240 exactly checkable records of tasks unlike the bundled training set; see
``tools/build_general_dataset.py``). The run's row gets ``general``: perplexity, exact
match and the per-record scores, so the report can put the in-domain gain beside the
general-set change and name the method that forgot least with a paired bootstrap
interval (LoRA "learns less and forgets less": Biderman et al., 2024, arXiv 2405.09673).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.sources import BUNDLED_GENERAL
from .fmt import DASH, fmt_value
from .stats import paired_difference, perplexity_interval, wilson

KEYS = (
    "eval_loss",
    "perplexity",
    "exact_match",
    "exact_n",
    "eval_tokens",
    "record_nll",
    "record_tokens",
    "exact_hits",
)
GENERAL_FILE = "general.json"


def general_source(spec: str | None) -> str | None:
    """``bundled`` (or ``bundled-general``) → the bundled general set; else a file path,
    which must exist; None/empty: no general evaluation."""
    if not spec:
        return None
    if spec in ("bundled", BUNDLED_GENERAL):
        return BUNDLED_GENERAL
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"--general-eval {spec}: no such file (give a .json or "
            ".jsonl file of records, or 'bundled')"
        )
    return str(path.resolve())


def eval_args(
    cfg_dict: dict, dataset: str, output: Path, adapter: Path | None, eval_all: bool
) -> list[str]:
    """``peftlab eval`` arguments: with ``adapter``, the run's own settings (its
    config.yaml) on ``dataset``; without, the base model under the comparison's."""
    t, d = cfg_dict["train"], cfg_dict["data"]
    args = (
        ["eval", "--output", str(output)]
        + (["--dataset", dataset] if dataset else [])
        + [
            "--eval-batch-size",
            str(t["eval_batch_size"]),
            "--exact-match-limit",
            str(t["exact_match_limit"]),
            "--max-new-tokens",
            str(t["max_new_tokens"]),
            "--device",
            t["device"],
            "--max-length",
            str(d["max_length"]),
        ]
    )
    if eval_all:
        args += ["--eval-all", "--data-format", "auto"]
    else:
        args += ["--eval-fraction", str(d["eval_fraction"])]
    if adapter is not None:
        return args + ["--adapter", str(adapter)]
    args += ["--mixed-precision", t["mixed_precision"], "--dtype", cfg_dict["model"]["dtype"]]
    for flag, value in (
        ("--model", cfg_dict["model"]["name"]),
        ("--max-eval-records", None if eval_all else d["max_eval_records"]),
        ("--data-format", None if eval_all else d.get("data_format")),
        ("--prompt-format", d.get("prompt_format")),
        ("--chat-template", d.get("chat_template")),
        ("--train-on", d.get("train_on")),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args


@dataclass
class GeneralSet:
    """What :func:`peftlab.compare.harness.compare` asks of each finished row: scored on
    ``dataset`` once (a rerun fills only the rows that lack it)."""

    dataset: str

    def needs(self, row: dict) -> bool:
        return needs_general(row, self.dataset)

    def run(self, row: dict, output: Path, run_subprocess, log) -> dict:
        return run_general(row, self.dataset, output, run_subprocess, log)


def needs_general(row: dict, dataset: str | None) -> bool:
    return bool(dataset) and row.get("status") == "ok" and row.get("general_dataset") != dataset


def run_general(row: dict, dataset: str, output: Path, run_subprocess, log) -> dict:
    """Score one finished row (base or run) on ``dataset``; the row with ``general``
    added (or ``general_error`` when the evaluation failed: the run itself stays ok)."""
    name = row["name"]
    run_dir = output / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    adapter = None if row.get("method") == "base" else run_dir
    out_json = run_dir / GENERAL_FILE
    log(f"== {name}: general set {dataset}")
    started = time.time()
    rc, err = run_subprocess(
        eval_args(row["config"], dataset, out_json, adapter, True),
        run_dir.parent / f"{name}.general.log",
    )
    row = {**row, "general_dataset": dataset, "general_seconds": time.time() - started}
    if rc != 0:
        return {**row, "general": None, "general_error": err}
    full = json.loads(out_json.read_text())
    return {**row, "general": {k: full[k] for k in KEYS if k in full}, "general_error": None}


# ---------------------------------------------------------------- the report's table
COLUMNS = [
    "Run",
    "In-domain perplexity",
    "General-set perplexity",
    "Change vs base",
    "General-set exact match",
]


def _ppl_samples(g: dict) -> dict:
    return {"nll": [g["record_nll"]], "tokens": [g["record_tokens"]]} if g.get("record_nll") else {}


def table(runs: list[dict]) -> list[list[str]]:
    """One row per finished run that was scored on the general set (the base first):
    in-domain perplexity before → after, general-set perplexity with its interval, its
    change against the base with the paired-bootstrap interval of the difference, and
    exact match; empty when no run has a general-set score."""
    scored = [r for r in runs if r.get("status") == "ok" and "general" in r]
    if not scored:
        return []
    base = next((r.get("general") for r in scored if r.get("method") == "base"), None)
    rows = []
    for r in scored:
        g = r.get("general")
        if not g:
            rows.append([r["name"], DASH, f"failed: {r.get('general_error')}", DASH, DASH])
            continue
        b, a = ((r.get(s) or {}).get("perplexity") for s in ("before", "after"))
        domain = (
            fmt_value(a)
            if r.get("method") == "base" or b is None
            else f"{fmt_value(b)} → {fmt_value(a)} ({(a - b) / b * 100:+.1f}%)"
        )
        ppl = fmt_value(g.get("perplexity"))
        ci = perplexity_interval(g.get("record_nll") or [], g.get("record_tokens") or [])
        if ci is not None:
            ppl += f" [{fmt_value(ci[0])}–{fmt_value(ci[1])}]"
        change = "reference" if r.get("method") == "base" else DASH
        if base and r.get("method") != "base" and base.get("perplexity"):
            p0 = base["perplexity"]
            change = f"{(g['perplexity'] - p0) / p0 * 100:+.1f}%"
            iv = paired_difference(_ppl_samples(g), _ppl_samples(base), "perplexity")
            if iv is not None:
                change += (
                    f" ({iv.estimate:+.3f}, 95% CI {iv.low:+.3f} to {iv.high:+.3f}"
                    f"{'' if iv.excludes_zero else ': no clear change'})"
                )
        em = DASH
        if g.get("exact_match") is not None and g.get("exact_n"):
            n = g["exact_n"]
            lo, hi = wilson(round(g["exact_match"] * n), n)
            em = f"{g['exact_match']:.1%} (n={n}, 95% CI {lo:.0%}–{hi:.0%})"
            if base and r.get("method") != "base" and base.get("exact_match") is not None:
                em += f", {(g['exact_match'] - base['exact_match']) * 100:+.1f} points"
        rows.append([r["name"], domain, ppl, change, em])
    return rows
