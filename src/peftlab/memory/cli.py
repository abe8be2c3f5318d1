"""``peftlab plan``: the command line and its output (a table per method, or JSON)."""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

from ..host import malloc_name
from .estimate import Estimate, GiB
from .planner import (
    FIT_MARGIN,
    data_shape,
    describe_bytes,
    estimate_run,
    fit_settings,
    parse_size,
    target_device,
)

GPUS = {
    "t4": 16,
    "v100": 32,
    "a10": 24,
    "a10g": 24,
    "l4": 24,
    "3090": 24,
    "4090": 24,
    "a6000": 48,
    "l40s": 48,
    "a100": 80,
    "a100-40gb": 40,
    "a100-80gb": 80,
    "h100": 80,
    "h200": 141,
}
"""GPU memory in GiB by name (``--fit a100``); a size works too (``--fit 24GB``)."""
CUDA_CONTEXT = int(0.5 * GiB)
"""What a GPU loses to the CUDA context and kernels before the first tensor."""
CUDA_RESERVE = 1.1
"""PyTorch's caching allocator reserves more than it hands out: headroom on allocated."""


def fit_cap(text: str, device: str) -> int:
    """The memory a run may use under ``--fit`` (a size, or a GPU by name: its memory
    less the CUDA context and the caching allocator's headroom)."""
    key = _gpu_key(text)
    size = GPUS[key] * GiB if key in GPUS else parse_size(text)
    if device == "cuda":
        return int((size - CUDA_CONTEXT) / CUDA_RESERVE)
    return size


def add_plan_parser(sub, add_method_options, add_common) -> None:
    p = sub.add_parser(
        "plan", help="predict a run's peak memory (and what fits a limit) before loading anything"
    )
    p.add_argument("--config", help="YAML file with train's keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--fit",
        metavar="SIZE|GPU",
        help="a memory limit (24GB, 80GiB, 3.5GiB; "
        "GB counts as GiB, as GPU memory is quoted) or a GPU name (a100, h100, "
        "4090...): which settings fit, for every method side by side",
    )
    p.add_argument("--methods", help="methods to plan with --fit (default: every method)")
    p.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel processes (memory is per process)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--no-data",
        action="store_true",
        help="do not read the dataset: plan every record at max_length (the worst case)",
    )
    add_method_options(p)
    add_common(p, train_fields=True)


def run_plan(ns: argparse.Namespace, build_cfg) -> dict[str, Any]:
    """``build_cfg(ns)``: one run configuration, or (a comparison config) one per method."""
    cfg = build_cfg(ns)
    methods = ns.methods.split(",") if ns.methods else None
    if isinstance(cfg, dict):
        return plan_configs(cfg, ns.fit, ns.num_processes, not ns.no_data)
    return plan_config(cfg, ns.fit, methods, ns.num_processes, not ns.no_data)


def plan_config(
    cfg,
    fit: str | None = None,
    methods: list[str] | None = None,
    processes: int = 1,
    use_data: bool = True,
) -> dict[str, Any]:
    """The plan of a run configuration (``peftlab plan``'s output as a dict; ``text`` is
    what it prints); with ``fit``, of ``methods`` (default: every method) on its model."""
    from ..methods import METHODS

    if not fit:
        return plan_configs({cfg.method: cfg}, None, processes, use_data)
    trials = {}
    for name in methods or list(METHODS):  # every registered method, in registry order
        trials[name] = copy.deepcopy(cfg)
        if name != cfg.method:
            trials[name].method, trials[name].adapter = name, {}
    return plan_configs(trials, fit, processes, use_data)


def plan_configs(
    cfgs: dict[str, Any], fit: str | None = None, processes: int = 1, use_data: bool = True
) -> dict[str, Any]:
    """The plan of each run configuration in ``cfgs`` (method name -> config, sharing a
    model and data, as a comparison's do); ``text`` is what ``peftlab plan`` prints."""
    first = next(iter(cfgs.values()))
    device = plan_device(first.train.device, fit)
    data = _data_or_none(first) if use_data else None
    out: dict[str, Any] = {
        "model": first.model.name or "SmolLM2-135M-Instruct (embedded)",
        "device": device,
        "prediction": True,
        "data": data.source if data else "every record at max_length",
        "methods": {},
    }
    if not fit:
        texts = []
        for name, cfg in cfgs.items():
            est = estimate_run(cfg, data, device, processes)
            out["methods"][name] = est.to_dict()
            texts.append(render_one(cfg, est))
        out["text"] = "\n\n".join(texts)
        return out
    cap = fit_cap(fit, device)
    out["fit"] = {"asked": fit, "usable_bytes": cap}
    for name, cfg in cfgs.items():
        out["methods"][name] = fit_method(cfg, cap, data, device, processes)
    out["text"] = render_fit(out)
    return out


def plan_device(device: str, fit: str | None) -> str:
    """The device a plan is for: the run's (``auto``: this machine's), except that
    ``--fit`` naming a GPU (``--fit h100``) plans an ``auto`` run for that GPU."""
    if device == "auto" and fit and _gpu_key(fit) in GPUS:
        return "cuda"
    return target_device(device)


def _gpu_key(text: str) -> str:
    return str(text).strip().lower().removeprefix("nvidia-").removeprefix("rtx")


def _data_or_none(cfg):
    try:
        return data_shape(cfg)
    except (OSError, ValueError):
        return None


def fit_method(cfg, cap: int, data, device: str, processes: int) -> dict[str, Any]:
    """As asked, whether it fits; the fastest setting that fits; the largest micro-batch
    piece (tokens) that fits with that setting."""
    asked = estimate_run(cfg, data, device, processes, with_time=False)
    chosen, est = fit_settings(cfg, cap, data, device)
    res = {
        "as_asked": asked.to_dict(),
        "fits_as_asked": asked.peak <= cap * FIT_MARGIN,
        "fits": chosen is not None,
        "settings": chosen,
        "estimate": est.to_dict() if est else None,
    }
    if chosen is not None:
        res["largest_piece_tokens"] = _largest_piece(cfg, chosen, cap, data, device)
    return res


def _largest_piece(cfg, chosen: dict, cap: int, data, device: str) -> int:
    """The most tokens one micro-batch piece may have (rows × length) under ``cap`` (with
    the planner's margin)."""
    cap = int(cap * FIT_MARGIN)
    trial = copy.deepcopy(cfg)
    for k, v in chosen.items():
        if k != "generation_cache":
            setattr(trial.train, k, v)
    seq = trial.data.max_length
    lo, hi = 0, 1
    while hi <= 1 << 20:
        trial.train.batch_size, trial.train.token_budget = hi, 0
        if (
            estimate_run(
                trial, None, device, generation_budget=chosen["generation_cache"], with_time=False
            ).peak
            > cap
        ):
            break
        lo, hi = hi, hi * 2
    while hi - lo > 1 and lo:
        mid = (lo + hi) // 2
        trial.train.batch_size = mid
        if (
            estimate_run(
                trial, None, device, generation_budget=chosen["generation_cache"], with_time=False
            ).peak
            > cap
        ):
            hi = mid
        else:
            lo = mid
    return lo * seq


def render_one(cfg, est: Estimate) -> str:
    s = est.settings
    lines = [
        f"peftlab plan (a prediction): {cfg.method} on "
        f"{cfg.model.name or 'the embedded SmolLM2-135M-Instruct'}, "
        f"{s['trainable']:,} trainable of {s['total_params']:,} parameters",
        f"  batch {s['batch_size']} x max {s['max_length']} tokens, token budget "
        f"{s['token_budget'] or 'off'}, loss chunk {s['loss_chunk'] or 'off'}, checkpointing "
        f"{'on' if s['gradient_checkpointing'] else 'off'}, {s['precision']} on "
        f"{s['device']}" + (f", allocator {s['allocator']}" if s["allocator"] else ""),
        f"  data: {s['data']}; largest piece {est.piece.rows} x {est.piece.seq} tokens",
        "",
        f"predicted peak: {describe_bytes(est.peak)} (in the {est.phase} phase; "
        + ", ".join(f"{k} {describe_bytes(v)}" for k, v in est.phases.items())
        + ")",
    ]
    width = max(len(k) for k in est.parts)
    for k, v in sorted(est.parts.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {k:<{width}}  {describe_bytes(v):>9}")
    if s["allocator"] == "default" and malloc_name() == "mimalloc":
        lines += [
            "",
            "mimalloc keeps freed pages for 30 s: over an epoch of varying batch "
            "shapes the resident set runs above this (one LoRA epoch of "
            "alpaca_en_demo: 4.1 GiB against a plan of 3.2); --max-memory bounds it, "
            "--allocator trim or lean too (slower steps)",
        ]
    elif s["allocator"] in ("default", "trim") and malloc_name() == "system":
        lines += [
            "",
            "glibc's default heap keeps freed activations: over a long run of "
            "varying batch shapes the resident set grows past this (an epoch of "
            "alpaca_en_demo: 8.3 GiB); --max-memory bounds it, --allocator lean too "
            "(slower steps); mimalloc (cmeel-mimalloc installed, PEFTLAB_MALLOC not "
            "system) keeps it near 4.1 GiB",
        ]
    if est.step_seconds:
        lines += [
            "",
            f"predicted step time: {est.step_seconds:.2f} s (this machine's "
            "matmul rate at the efficiency measured for training steps)",
        ]
    return "\n".join(lines)


def render_fit(out: dict) -> str:
    cap = out["fit"]["usable_bytes"]
    lines = [
        f"peftlab plan (predictions): {out['model']} on {out['device']}, limit "
        f"{out['fit']['asked']} ({describe_bytes(cap)} usable; a setting fits when "
        f"its prediction is within {FIT_MARGIN:.0%} of that)",
        "",
        "| method | as asked | fits? | fastest setting that fits | its peak | largest piece |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in out["methods"].items():
        asked = describe_bytes(r["as_asked"]["peak_bytes"])
        if r["fits"]:
            st = r["settings"]
            setting = (
                f"budget {st['token_budget'] or 'off'}, loss chunk {st['loss_chunk'] or 'off'}, "
                "checkpointing "
                f"{'on' if st['gradient_checkpointing'] else 'off'}"
                + (f", allocator {st['allocator']}" if out["device"] == "cpu" else "")
            )
            peak = describe_bytes(r["estimate"]["peak_bytes"])
            piece = f"{r['largest_piece_tokens']:,} tokens"
        else:
            setting, peak = "none", f"smallest {describe_bytes(r['estimate']['peak_bytes'])}"
            piece = "-"
        lines.append(
            f"| {name} | {asked} | {'yes' if r['fits_as_asked'] else 'no'} | "
            f"{setting} | {peak} | {piece} |"
        )
    return "\n".join(lines)


def print_plan(res: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in res.items() if k != "text"}, indent=2))
    else:
        print(res["text"])
