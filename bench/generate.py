"""Generation speed on the embedded model, every method, one source tree beside another.

For each method's adapter (the demo's runs under ``runs/compare-demo/runs/<method>``,
or 1-step runs this script trains once into ``runs/bench-generate/`` when they are
missing) and the base model, in a fresh process per (tree, method, repeat), alternating
trees:

- **load**: opening the run (base model, adapter; QLoRA quantizes while loading);
- **generate**: greedy, 16 Alpaca prompts in one batch, exactly 48 new tokens each
  (``min_new_tokens``, so every run does the same work), through peftlab's own
  ``generate``, with the run's mixed precision (bf16 autocast on this CPU); tokens/s =
  16·48 / time;
- **exact match**: the run's exact-match evaluation of 64 records (real stopping), as
  ``peftlab eval`` runs it.

The compute limit is 2 · (matmul parameters) · tokens at the bf16 matmul rate measured
in the same invocation.

    python bench/generate.py --tree old=/tmp/ab-old/src --tree new=src --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("base", "lora", "qlora", "dora", "adalora", "ia3")
DEMO_RUNS = ROOT / "runs" / "compare-demo" / "runs"
OWN_RUNS = ROOT / "runs" / "bench-generate"
BATCH, NEW_TOKENS = 16, 48


def adapter_dir(method: str) -> Path | None:
    if method == "base":
        return None
    demo = DEMO_RUNS / method
    return demo if (demo / "adapter_config.json").is_file() else OWN_RUNS / method


def ensure_adapters() -> None:
    for m in METHODS[1:]:
        d = adapter_dir(m)
        if d is not None and not (d / "adapter_config.json").is_file():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "peftlab",
                    "train",
                    "--method",
                    m,
                    "--max-steps",
                    "1",
                    "--output",
                    str(d),
                    "--max-eval-records",
                    "8",
                ],
                check=True,
                cwd=ROOT,
            )


def child(method: str, with_exact: bool) -> None:
    """One measurement, printed as JSON (runs in its own process)."""
    import torch

    from peftlab import api
    from peftlab.training import evaluate
    from peftlab.training.session import open_session

    adapter = adapter_dir(method)
    t0 = time.perf_counter()
    cfg = api.config_for_adapter(adapter)
    s = open_session(cfg, adapter_dir=adapter, train_data=False)
    load = time.perf_counter() - t0
    prompts = [s.prompt.prompt(r) for r in s.eval_data.records[:BATCH]]
    s.model.generate = functools.partial(s.model.generate, min_new_tokens=NEW_TOKENS)
    kw = dict(
        device=s.device,
        autocast=s.autocast(),
        add_special_tokens=s.prompt.add_special_tokens,
        stop_ids=s.prompt.stop_ids(),
    )
    t0 = time.perf_counter()
    evaluate.generate(s.model, s.tokenizer, prompts, NEW_TOKENS, **kw)
    gen = time.perf_counter() - t0
    del s.model.generate
    em, em_time = {"exact_n": 0}, float("nan")
    if with_exact:
        t0 = time.perf_counter()
        em = evaluate.exact_match(
            s.model,
            s.tokenizer,
            s.eval_data.records,
            64,
            NEW_TOKENS,
            s.device,
            s.autocast(),
            s.prompt,
        )
        em_time = time.perf_counter() - t0
    n = sum(m.weight.numel() for m in s.model.modules() if isinstance(m, torch.nn.Linear))
    n += sum(
        getattr(m, "weight_numel", 0)
        for m in s.model.modules()
        if not isinstance(m, torch.nn.Linear)
    )
    print(
        json.dumps(
            {
                "load": load,
                "generate": gen,
                "exact_match_time": em_time,
                "exact_n": em["exact_n"],
                "matmul_params": n,
            }
        )
    )


def bf16_rate() -> float:
    import torch

    a, b = (
        torch.randn(768, 2048, dtype=torch.bfloat16),
        torch.randn(2048, 2048, dtype=torch.bfloat16),
    )
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * 768 * 2048 * 2048 / statistics.median(ts[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tree",
        action="append",
        default=None,
        help="NAME=PATH of a src directory (default: new=src)",
    )
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--exact-match",
        action="store_true",
        help="also time the exact-match evaluation of 64 records",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.exact_match)
    trees = dict(t.split("=", 1) for t in (args.tree or ["new=src"]))
    ensure_adapters()
    rate = bf16_rate()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    results: dict = {}
    methods = args.methods.split(",")
    for rep in range(args.repeats):
        for m in methods:
            for name, path in trees.items():
                e = {**env, "PYTHONPATH": str((ROOT / path).resolve())}
                cmd = [sys.executable, __file__, "--child", m] + (
                    ["--exact-match"] if args.exact_match else []
                )
                out = subprocess.run(cmd, env=e, cwd=ROOT, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{name}/{m} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((name, m), []).append(r)
                print(
                    f"rep {rep} {name:>5} {m:>8}: load {r['load']:.1f} s, generate "
                    f"{r['generate']:.2f} s, exact match {r['exact_match_time']:.1f} s",
                    flush=True,
                )
    print(f"\nbf16 matmul rate {rate / 1e9:.0f} GFLOP/s; {BATCH} x {NEW_TOKENS} tokens\n")
    print(
        "| method | tree | tokens/s median (min–max) | ÷ compute limit | load s | "
        "exact match (64) s |"
    )
    print("|---|---|---|---|---|---|")
    toks = BATCH * NEW_TOKENS

    def med(xs):
        return f"{statistics.median(xs):.0f} ({min(xs):.0f}–{max(xs):.0f})"

    for m in methods:
        for name in trees:
            rs = results[(name, m)]
            tps = [toks / r["generate"] for r in rs]
            limit = rate / (2 * rs[0]["matmul_params"])
            em = [r["exact_match_time"] for r in rs]
            print(
                f"| {m} | {name} | {med(tps)} | {statistics.median(tps) / limit:.2f} | "
                f"{statistics.median(r['load'] for r in rs):.1f} | "
                f"{statistics.median(em):.1f} ({min(em):.1f}–{max(em):.1f}) |"
            )


if __name__ == "__main__":
    main()
