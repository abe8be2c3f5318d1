"""``peftlab compare``: every method on the same model, data, seed and budget.

Each method trains in its own process through the same ``peftlab train`` code path (so
peak memory is that run's alone, one method running out of memory cannot take the others
down, and process-wide state never leaks between methods), plus one row for the
untouched base model. One JSON line per finished run is appended to
``OUTPUT/results.jsonl``; a rerun skips finished runs and resumes an interrupted one from
its last checkpoint. The harness knows methods only as names in ``METHODS``: a method
added later is compared with no change here. Without a method list every method runs
whose ``compare_by_default`` is true; the others (full fine-tuning) are added by name,
``extra_methods`` (``peftlab compare --full``).

A compare config is a train config plus ``methods: [...]`` and, optionally, one mapping
of options per method name (``lora: {r: 16}``).
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import yaml

from ..config import build_config, load_yaml
from ..core.atomic import atomic_write_bytes
from ..core.rundir import drop_aside, output_lock, refuse_inputs
from ..lmeval import LmEvalSpec
from ..lmeval import check as check_lm_eval
from ..methods import METHODS
from ..tracking import check_report_to, plan_comparison
from ..training.session import command_inputs, log
from .benchmarks import Benchmarks, spec_from
from .forgetting import GeneralSet, eval_args, general_source
from .grid import (
    default_methods,
    parse_seeds,
    parse_sweep,
    plan_runs,
    split_compare_config,
    sweepable,
)
from .owner import claim_compare_dir, wait_until_free
from .owner import run_child as _run_subprocess
from .report import RESULTS, load_results, write_report

BASE = "base"


def read_rows(output: Path) -> dict[str, dict]:
    """Finished rows by name (a later line for the same name wins; a line cut short by
    an interruption is ignored, so that run simply runs again)."""
    path = output / RESULTS
    return {r["name"]: r for r in load_results(path)[0]} if path.exists() else {}


def append_row(output: Path, row: dict) -> None:
    """Append one line, rewriting the file atomically (an interruption loses nothing)."""
    path = output / RESULTS
    old = path.read_bytes() if path.exists() else b""
    atomic_write_bytes(path, old + (json.dumps(row, default=str) + "\n").encode())


def _metrics_curves(run_dir: Path) -> tuple[list, list, dict]:
    """Training loss by step; eval loss by step as [step, eval loss, training seconds,
    training tokens up to that step] (the equal-compute view; the seconds are the
    optimiser steps' own, without evaluations and checkpoints); the last per-layer rank
    maps logged."""
    loss, evals, ranks = [], [], {}
    seconds, tokens = {0: 0.0}, {0: 0}
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line) if line.strip() else {}
        if "loss" in rec:
            loss.append([rec["step"], rec["loss"]])
            if "step_seconds" in rec and rec["step"] - 1 in seconds:
                seconds[rec["step"]] = seconds[rec["step"] - 1] + rec["step_seconds"]
                tokens[rec["step"]] = tokens[rec["step"] - 1] + rec.get("tokens", 0)
        if "eval_loss" in rec:
            evals.append(
                [rec["step"], rec["eval_loss"], seconds.get(rec["step"]), tokens.get(rec["step"])]
            )
        for key, value in rec.items():
            if key.endswith("_ranks") and isinstance(value, dict):
                ranks[key] = value
    return loss, evals, ranks


def _row(
    name: str, cfg_dict: dict, started: float, res: dict | None, error: str | None, run_dir: Path
) -> dict:
    row = {
        "name": name,
        "method": cfg_dict.get("method", name),
        "config": cfg_dict,
        "status": "failed" if error else "ok",
        "error": error,
        "wall_seconds": time.time() - started,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if res is None:
        return row
    loss, evals, ranks = _metrics_curves(run_dir)
    row.update(
        params=res.get("params"),
        adapter_bytes=res.get("adapter_bytes", 0),
        peak_memory_bytes=res.get("peak_memory_bytes"),
        predicted_memory_bytes=(res.get("predicted_memory") or {}).get("peak_bytes"),
        memory_kind="cuda" if str(res.get("device", "")).startswith("cuda") else "rss",
        train_seconds=res.get("train_seconds"),
        tokens_per_s=res.get("tokens_per_s"),
        train_tokens=res.get("train_tokens"),
        loss_curve=loss,
        eval_curve=evals,
        before=res.get("before"),
        after=res.get("after"),
        merge_check=res.get("merge_check"),
        layer_ranks=ranks,
        env=res.get("env"),
        data=res.get("data"),
    )
    return row


def run_method(name: str, cfg_dict: dict, output: Path) -> dict:
    """Train one method in a subprocess (resuming if it has checkpoints); its row."""
    run_dir = output / "runs" / name
    resume = any((run_dir / "checkpoints").glob("step-*/trainer_state.json"))
    # The harness owns runs/<name>: a run that never reached a checkpoint starts over
    # (--overwrite). Its config and log live beside the run directory, not in it.
    cfg_dict = {
        **cfg_dict,
        "train": {
            **cfg_dict["train"],
            "output": str(run_dir),
            "resume": resume,
            "overwrite": not resume,
        },
    }
    cfg_path = output / "runs" / f"{name}.compare-config.yaml"
    atomic_write_bytes(cfg_path, yaml.safe_dump(cfg_dict, sort_keys=False).encode())
    log(f"== {name}: {'resuming' if resume else 'training'} -> {run_dir}")
    wait_until_free(run_dir, log)  # a child of a killed comparison may still be exiting
    started = time.time()
    rc, err = _run_subprocess(
        ["train", "--config", str(cfg_path)], output / "runs" / f"{name}.train.log"
    )
    if rc != 0:
        return _row(name, cfg_dict, started, None, err, run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    return _row(name, cfg_dict, started, res, None, run_dir)


def run_base(cfg_dict: dict, output: Path) -> dict:
    """Evaluate the untouched base model (same data and eval settings) in a subprocess."""
    run_dir = output / "runs" / BASE
    run_dir.mkdir(parents=True, exist_ok=True)
    log(f"== {BASE}: evaluating the base model")
    args = eval_args(
        cfg_dict, cfg_dict["data"]["dataset"], run_dir / "eval.json", None, eval_all=False
    )
    started = time.time()
    rc, err = _run_subprocess(args, run_dir / "eval.log")
    cfg_dict = {**cfg_dict, "method": BASE, "adapter": {}}
    if rc != 0:
        return _row(BASE, cfg_dict, started, None, err, run_dir)
    full = json.loads((run_dir / "eval.json").read_text())
    ev = {
        k: full[k]
        for k in (
            "eval_loss",
            "perplexity",
            "exact_match",
            "exact_n",
            "eval_tokens",
            "record_nll",
            "record_tokens",
            "exact_hits",
        )
        if k in full
    }
    params = {"trainable": 0, "total": full["params"]["total"], "share_pct": 0.0}
    res = {
        "params": params,
        "before": ev,
        "after": ev,
        "adapter_bytes": 0,
        "tokens_per_s": None,
        "merge_check": None,
        "env": full.get("env", {}),
        "device": full.get("device"),
        "peak_memory_bytes": full.get("peak_memory_bytes"),
        "data": full.get("data"),
    }
    return _row(BASE, cfg_dict, started, res, None, run_dir)


def compare(
    config: str | Path | dict | None = None,
    methods: list[str] | None = None,
    output: str | Path = "runs/compare",
    include_base: bool = True,
    report: bool = True,
    extra_methods: list[str] | None = None,
    seeds: int | str | list[int] | None = None,
    general_eval: str | None = None,
    lm_eval: str | LmEvalSpec | None = None,
    sweep: str | dict | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> list[dict]:
    """Run every method (and the base model); write results.jsonl and (``report``) the
    report; return the rows in run order. ``methods``: default the config's, else
    :func:`default_methods`; ``extra_methods`` are added after them (e.g. ``["full"]``).
    ``general_eval``: a file or ``bundled``, scored by every run and the base
    (:mod:`.forgetting`). ``lm_eval``: lm-evaluation-harness tasks, scored the same way
    (:mod:`.benchmarks`; the config's ``lm_eval*`` keys otherwise). ``sweep``:
    ``r=2,4,8`` trains each method once per value of one of its options (the
    parameter-efficiency curve). ``overwrite``: replace a directory that is not this
    comparison's (or start this one again); see :mod:`.owner`."""
    data = load_yaml(config) if isinstance(config, (str, Path)) else dict(config or {})
    seeds = seeds if seeds is not None else data.get("seeds")
    general = general_source(general_eval if general_eval is not None else data.get("general_eval"))
    bench = lm_eval if isinstance(lm_eval, LmEvalSpec) else spec_from(data, lm_eval)
    check_lm_eval(bench)  # the harness, its tasks and their data: before any run
    scorers = ([GeneralSet(general)] if general else []) + ([Benchmarks(bench)] if bench else [])
    cfg_methods, per_method, common = split_compare_config(data)
    common.update({k: v for k, v in overrides.items() if v is not None})
    common.setdefault("plan_memory", True)  # the report shows predicted beside measured
    if check_report_to(common.get("report_to")):  # before any run; grouped as one experiment
        common.setdefault("experiment", Path(output).resolve().name)
    methods = list(methods or cfg_methods or default_methods())
    methods += [m for m in dict.fromkeys(extra_methods or []) if m not in methods]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(sorted(METHODS))}"
        )
    output = Path(output)
    seed_list = parse_seeds(seeds, build_config(common).train.seed)
    swept = parse_sweep(sweep if sweep is not None else data.get("sweep"))
    if swept and not any(sweepable(m, swept[0]) for m in methods):
        raise ValueError(
            f"--sweep {swept[0]}: none of {', '.join(methods)} has an option {swept[0]!r}"
        )
    runs = plan_runs(methods, seed_list, swept)
    reads = command_inputs(build_config(common))[0]
    files = [config if isinstance(config, (str, Path)) else None, general]
    files += [bench.include] if bench and bench.include else []
    reads += [Path(f) for f in files if f and Path(f).is_file()]
    refuse_inputs(output, reads, replaced_dir=overwrite)
    with output_lock(output, "compare"):
        aside = claim_compare_dir(output, overwrite)
        return _compare(output, runs, per_method, common, include_base, report, scorers, aside)


def _compare(
    output: Path,
    runs: list[tuple],
    per_method: dict,
    common: dict,
    include_base: bool,
    report: bool,
    scorers: list = (),
    aside: Path | None = None,
) -> list[dict]:
    """``runs``: (row name, method, seed or None, swept options) in order; ``scorers``:
    what every finished row is scored on besides its own evaluation (the general set,
    standard benchmarks), each once: a rerun only fills the rows that lack it."""
    output.mkdir(parents=True, exist_ok=True)
    if common.get("experiment"):  # tracked: the report goes to the experiment too
        plan_comparison(output, common.get("report_to"), common["experiment"])
    done = read_rows(output)
    order = ([(BASE, BASE, None, {})] if include_base else []) + runs
    for name, method, seed, swept in order:
        if done.get(name, {}).get("status") == "ok":
            log(f"== {name}: finished earlier, skipped")
            scored = _score(done[name], scorers, output)
            if scored is not done[name]:
                done[name] = scored
                append_row(output, scored)
            continue
        opts = {} if name == BASE else per_method.get(method, {})
        opts = {**opts, **swept, **({"seed": seed} if seed is not None else {})}
        cfg = build_config(common, **({"method": method, **opts} if name != BASE else {}))
        try:
            row = (
                run_base(cfg.to_dict(), output)
                if name == BASE
                else run_method(name, cfg.to_dict(), output)
            )
            row["seed"] = seed
            row["sweep"] = swept or None
            row = _score(row, scorers, output)
        except Exception as e:  # a harness failure for one method must not stop the rest
            row = _row(name, cfg.to_dict(), time.time(), None, f"{type(e).__name__}: {e}", output)
        append_row(output, row)
        done[name] = row
        drop_aside(aside)  # a result is written: an overwritten directory's old contents go
        aside = None
    if report:
        write_report(output)
    return [done[n] for n, *_ in order if n in done]


def _score(row: dict, scorers, output: Path) -> dict:
    """``row`` scored by each scorer that it still needs (the same row when none)."""
    for sc in scorers:
        if sc.needs(row):
            row = sc.run(row, output, _run_subprocess, log)
    return row
