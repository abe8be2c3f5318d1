"""Standard benchmarks through lm-evaluation-harness (Gao et al., "A framework for few-shot
language model evaluation", EleutherAI): ``peftlab eval --lm-eval TASKS`` scores the
adapter and its base model on the harness's tasks and puts the scores beside peftlab's
own evaluation in ``eval.json``, with every document's score, so that ``compare`` can
put paired intervals on the differences.

The model goes to the harness as it is loaded here (the harness's Hugging Face model
class, ``HFLM``, given the model instance): the adapter applied by peftlab's loader, whose
logits equal Hugging Face PEFT's, on the base model as trained (the embedded model, a
4-bit base). Tasks and their data are checked before any model loads: an unknown task,
or one whose data cannot be read (offline, a Hub dataset not in the local cache), is a
one-line error naming it. ``--lm-eval-include DIR`` adds the task YAML files in DIR (a
task over a local JSON file needs no network).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL = "pip install 'peftlab[lm-eval]'"


@dataclass
class LmEvalSpec:
    tasks: list[str]
    include: str | None = None
    """A directory of task YAML files the harness adds to its own."""
    limit: int | None = None
    """At most this many documents per task (the harness's ``limit``)."""
    batch_size: int | None = None
    """Documents per batch (None: the run's ``eval_batch_size``)."""
    num_fewshot: int | None = None
    base: bool = True
    """For an adapter, score its base model too."""


def parse_spec(
    tasks: str | list[str] | None,
    include: str | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    num_fewshot: int | None = None,
    base: bool = True,
) -> LmEvalSpec | None:
    """``arc_easy,hellaswag`` (or a list) -> a spec; None or empty -> None."""
    names = tasks if isinstance(tasks, list) else str(tasks or "").split(",")
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        return None
    for value, flag in ((limit, "--lm-eval-limit"), (batch_size, "--eval-batch-size")):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{flag} {value}: give a whole number of at least 1")
    if num_fewshot is not None and (not isinstance(num_fewshot, int) or num_fewshot < 0):
        raise ValueError(f"--lm-eval-fewshot {num_fewshot}: give a whole number of at least 0")
    if include is not None and not Path(include).expanduser().is_dir():
        raise FileNotFoundError(f"--lm-eval-include {include}: no such directory")
    return LmEvalSpec(names, include, limit, batch_size, num_fewshot, base)


def _task_manager(spec: LmEvalSpec):
    if importlib.util.find_spec("lm_eval") is None:
        raise ModuleNotFoundError(f"--lm-eval needs lm-evaluation-harness: {INSTALL}")
    include = str(Path(spec.include).expanduser().resolve()) if spec.include else None
    return _indexed(include)


@functools.lru_cache(maxsize=4)
def _indexed(include: str | None):
    """The harness's task index (seconds to build: once per process and directory)."""
    from lm_eval.tasks import TaskManager

    with _quiet():
        return TaskManager(include_path=include, verbosity="ERROR")


def _load_tasks(spec: LmEvalSpec, manager) -> dict:
    """The harness's task dictionary (``manager.load``); every failure names the task."""
    known = set(manager.all_tasks)
    unknown = [t for t in spec.tasks if t not in known]
    if unknown:
        raise ValueError(
            f"--lm-eval: unknown task(s) {', '.join(unknown)} (lm-eval lists its tasks with "
            "`lm-eval ls tasks`; --lm-eval-include DIR adds your own task YAML files)"
        )
    try:
        with _quiet():
            return manager.load(list(spec.tasks))
    except Exception:  # the harness and datasets raise many kinds here: find the task
        pass
    for name in spec.tasks:
        try:
            with _quiet():
                manager.load([name])
        except Exception as e:
            first = str(e).splitlines()[0][:200] if str(e) else "no message"
            raise RuntimeError(
                f"--lm-eval {name}: its data could not be loaded ({type(e).__name__}: "
                f"{first}); offline, only tasks whose data is local (or already in the "
                "datasets cache) can run"
            ) from None
    raise RuntimeError(f"--lm-eval {','.join(spec.tasks)}: the harness could not load them")


def check(spec: LmEvalSpec | None) -> None:
    """Before any model loads: the harness installed, every task known, its data readable."""
    if spec is not None:
        _load_tasks(spec, _task_manager(spec))


def score(spec: LmEvalSpec, model, tokenizer) -> dict[str, Any]:
    """Run the harness's tasks on ``model``: ``{"scores": {task: {metric: value,
    metric_stderr: value, "n": documents}}, "samples": {task: {metric: [one value per
    document, in document order]}}}``."""
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    task_dict = _load_tasks(spec, _task_manager(spec))
    tasks = task_dict["tasks"]
    if spec.num_fewshot is not None:
        for task in tasks.values():
            task.set_config(key="num_fewshot", value=spec.num_fewshot)
    was_training = model.training
    model.eval()
    try:
        with _quiet(), _default_sigterm():
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=spec.batch_size or 8)
            out = evaluate(
                lm=lm,
                task_dict=task_dict,
                limit=spec.limit,
                log_samples=True,
                bootstrap_iters=1000,
                verbosity="ERROR",
            )
    finally:
        model.train(was_training)
    return {
        "scores": {t: _scores(r) for t, r in out["results"].items() if t in tasks},
        "samples": {t: _samples(s) for t, s in out["samples"].items() if t in tasks},
    }


def score_session(spec: LmEvalSpec, s, open_base=None) -> dict[str, dict]:
    """The harness's scores of the session's model (as ``adapter``, or ``base`` without
    ``open_base``) and, with ``open_base`` (a callable loading the base model alone, once
    the first model is let go: one model in memory at a time), of its base; printed side
    by side on stderr."""
    out = {"base" if open_base is None else "adapter": score(spec, s.model, s.tokenizer)}
    if open_base is not None:
        s.model = None
        gc.collect()
        b = open_base()
        out["base"] = score(spec, b.model, b.tokenizer)
    for line in summary_lines({k: v["scores"] for k, v in out.items()}):
        print(line, file=sys.stderr, flush=True)
    return out


def _scores(result: dict) -> dict[str, float]:
    """``acc,none`` -> ``acc`` (the unfiltered metric), others keep their filter."""
    scores = {}
    for key, value in result.items():
        if "," not in key or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric, filt = key.split(",", 1)
        scores[metric if filt == "none" else f"{metric},{filt}"] = float(value)
    scores["n"] = int(result.get("sample_len") or 0)
    return scores


def _samples(samples: list[dict]) -> dict[str, list[float]]:
    """Per-document values of every numeric metric, in document order."""
    skip = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "metrics"}
    per: dict[str, dict[int, float]] = {}
    for s in samples:
        filt = s.get("filter", "none")
        for key, value in s.items():
            if key in skip or key.endswith("_hash") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                name = key if filt == "none" else f"{key},{filt}"
                per.setdefault(name, {})[int(s["doc_id"])] = float(value)
    return {k: [v[i] for i in sorted(v)] for k, v in per.items()}


def summary_lines(scores: dict[str, dict[str, dict]]) -> list[str]:
    """One line per task and metric: ``{label: {task: {metric: value}}}`` side by side."""
    lines = []
    labels = list(scores)
    tasks = list(dict.fromkeys(t for by_task in scores.values() for t in by_task))
    for task in tasks:
        first = scores[labels[0]].get(task, {})
        for metric in [m for m in first if m != "n" and not m.endswith("_stderr")]:
            parts = []
            for label in labels:
                got = scores[label].get(task, {})
                if metric in got:
                    se = got.get(f"{metric}_stderr")
                    err = f" ± {se:.4f}" if isinstance(se, float) else ""
                    parts.append(f"{label} {got[metric]:.4f}{err}")
            lines.append(f"lm-eval {task} {metric} (n={first.get('n')}): " + ", ".join(parts))
    return lines


@contextlib.contextmanager
def _default_sigterm():
    """The harness bootstraps standard errors in a process pool and ends it with SIGTERM:
    its forked workers must not inherit peftlab's SIGTERM handler (a traceback each)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _quiet():
    """The harness logs every request at INFO; keep its warnings only."""
    log = logging.getLogger("lm_eval")
    old = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(old)


__all__ = ["LmEvalSpec", "check", "parse_spec", "score", "score_session", "summary_lines"]
