"""Standard benchmarks in the comparison: ``compare --lm-eval TASKS`` scores the base model
and every finished run with lm-evaluation-harness (``peftlab eval --lm-eval``, one
process per row, as the general set is scored in :mod:`.forgetting`). A row gets
``lm_eval`` (per task: each metric with the harness's standard error) and every
document's score, so the report can give each run's change against the base with a
paired bootstrap interval over the same documents, where the harness's figure is the
mean of its documents' scores (accuracy, exact match; not corpus-level figures such as
BLEU or a perplexity over tokens, which get the change alone).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..lmeval import LmEvalSpec, parse_spec
from .fmt import DASH
from .forgetting import eval_args
from .stats import paired_difference

LM_EVAL_FILE = "lm_eval.json"
COLUMNS = ["Run", "Task", "Metric", "Score (± harness stderr)", "Change vs base"]
CONFIG_KEYS = ("lm_eval", "lm_eval_include", "lm_eval_limit", "lm_eval_fewshot")
"""A comparison config's keys for the benchmarks (read by :func:`spec_from`)."""


def spec_from(data: dict, tasks: str | None = None) -> LmEvalSpec | None:
    """The comparison's lm-eval settings: ``tasks`` (the option) or the config's
    ``lm_eval``, with ``lm_eval_include``, ``lm_eval_limit``, ``lm_eval_fewshot``."""
    return parse_spec(
        tasks if tasks is not None else data.get("lm_eval"),
        data.get("lm_eval_include"),
        data.get("lm_eval_limit"),
        None,
        data.get("lm_eval_fewshot"),
    )


@dataclass
class Benchmarks:
    """What :func:`peftlab.compare.harness.compare` asks of each finished row."""

    spec: LmEvalSpec

    @property
    def key(self) -> str:
        s = self.spec
        return f"{','.join(s.tasks)}|limit={s.limit}|fewshot={s.num_fewshot}|{s.include}"

    def needs(self, row: dict) -> bool:
        return row.get("status") == "ok" and row.get("lm_eval_key") != self.key

    def run(self, row: dict, output: Path, run_subprocess, log) -> dict:
        """Score one finished row; the row with ``lm_eval`` added (or ``lm_eval_error``:
        the run itself stays ok)."""
        name, s = row["name"], self.spec
        run_dir = output / "runs" / name
        run_dir.mkdir(parents=True, exist_ok=True)
        adapter = None if row.get("method") == "base" else run_dir
        out_json = run_dir / LM_EVAL_FILE
        log(f"== {name}: lm-eval {','.join(s.tasks)}")
        dataset = row["config"]["data"]["dataset"]
        args = eval_args(row["config"], dataset, out_json, adapter, False)
        args += ["--exact-match-limit", "0", "--lm-eval", ",".join(s.tasks), "--lm-eval-skip-base"]
        for flag, value in (
            ("--lm-eval-include", s.include),
            ("--lm-eval-limit", s.limit),
            ("--lm-eval-fewshot", s.num_fewshot),
        ):
            if value is not None:
                args += [flag, str(value)]
        started = time.time()
        rc, err = run_subprocess(args, run_dir.parent / f"{name}.lm_eval.log")
        row = {**row, "lm_eval_key": self.key, "lm_eval_seconds": time.time() - started}
        if rc != 0:
            return {**row, "lm_eval": None, "lm_eval_samples": None, "lm_eval_error": err}
        (got,) = json.loads(out_json.read_text())["lm_eval"].values()
        return {
            **row,
            "lm_eval": got["scores"],
            "lm_eval_samples": got["samples"],
            "lm_eval_error": None,
        }


def table(runs: list[dict]) -> list[list[str]]:
    """One row per run, task and metric (the base first); empty when no run was scored."""
    scored = [r for r in runs if r.get("status") == "ok" and "lm_eval" in r]
    base = next((r for r in scored if r.get("method") == "base"), None)
    rows = []
    for r in scored:
        if not r.get("lm_eval"):
            rows.append([r["name"], DASH, DASH, f"failed: {r.get('lm_eval_error')}", DASH])
            continue
        for task, scores in r["lm_eval"].items():
            for metric, value in scores.items():
                if metric == "n" or "_stderr" in metric:
                    continue
                se = scores.get(_stderr_key(metric))
                cell = f"{value:.4f}" + (f" ± {se:.4f}" if isinstance(se, float) else "")
                cell += f" (n={scores.get('n')})"
                rows.append([r["name"], task, metric, cell, _change(r, base, task, metric)])
    return rows


def _stderr_key(metric: str) -> str:
    name, _, filt = metric.partition(",")
    return f"{name}_stderr" + (f",{filt}" if filt else "")


def _change(r: dict, base: dict | None, task: str, metric: str) -> str:
    """The run's figure minus the base's; with the 95% paired-bootstrap interval where the
    figure is the mean of the documents' scores, on the same documents."""
    if r is base:
        return "reference"
    b = ((base or {}).get("lm_eval") or {}).get(task, {}).get(metric)
    if b is None:
        return DASH
    value = r["lm_eval"][task][metric]
    text = f"{value - b:+.4f}"
    mine = ((r.get("lm_eval_samples") or {}).get(task) or {}).get(metric)
    theirs = ((base.get("lm_eval_samples") or {}).get(task) or {}).get(metric)
    if not _is_mean(mine, value) or not _is_mean(theirs, b):
        return text
    iv = paired_difference({"hits": [mine]}, {"hits": [theirs]}, "exact")
    if iv is None:
        return text
    return text + (
        f" (95% CI {iv.low:+.4f} to {iv.high:+.4f}"
        f"{'' if iv.excludes_zero else ': no clear change'})"
    )


def _is_mean(samples: list | None, figure: float) -> bool:
    return bool(samples) and abs(sum(samples) / len(samples) - figure) < 1e-9


__all__ = ["COLUMNS", "CONFIG_KEYS", "LM_EVAL_FILE", "Benchmarks", "spec_from", "table"]
