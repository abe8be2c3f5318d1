"""LoftQ's start against plain QLoRA's, before any training: the approximation error
‖W − (Q + s·B A)‖_F summed over the adapted layers, and the eval perplexity of the
4-bit model with its initial adapter, beside the full-precision base's.

The embedded SmolLM2-135M-Instruct (fp32 compute, no autocast) and the bundled eval set
(120 records, response tokens only, as ``peftlab train`` evaluates), QLoRA r 16, alpha 32
on all seven projections (compare-wide's settings). Each configuration runs in this one
process in turn; nothing is timed.

    python bench/loftq_start.py                     # plain QLoRA, LoftQ 1, 3 and 5
    python bench/loftq_start.py --iters 1,2 --max-length 128 --records 32
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

from peftlab import build_config
from peftlab.training.evaluate import perplexity
from peftlab.training.session import open_session


def start(method: str, max_length: int, batch: int, records: int, **adapter) -> dict:
    cfg = build_config(
        model="embedded",
        method=method,
        r=16,
        alpha=32,
        dropout=0.0,
        mixed_precision="no",
        max_length=max_length,
        device="cpu",
        **adapter,
    )
    s = open_session(cfg, new_adapter=True, train_data=False)
    ev = s.eval_data.examples[:records] if records else s.eval_data.examples
    out = perplexity(s.model, ev, s.tokenizer.pad_token_id, batch, loss_options=s.loss_options)
    errors = s.adapter.method.describe().get("loftq_error") or {}
    del s
    gc.collect()
    return {
        "eval_loss": out["eval_loss"],
        "perplexity": out["perplexity"],
        "eval_tokens": out["eval_tokens"],
        **{f"error_{k}": v for k, v in errors.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", default="1,3,5", help="LoftQ alternations to try")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--records", type=int, default=0, help="the first N eval records (0: all)")
    a = ap.parse_args()
    run = lambda method, **kw: start(method, a.max_length, a.batch, a.records, **kw)  # noqa: E731
    rows = {"full precision (LoRA, B = 0)": run("lora")}
    rows["QLoRA (NF4, B = 0)"] = run("qlora")
    for n in (int(x) for x in a.iters.split(",")):
        rows[f"QLoRA + LoftQ, {n} iter"] = run("qlora", loftq_iter=n)
        print(json.dumps({n: rows[f"QLoRA + LoftQ, {n} iter"]}), file=sys.stderr, flush=True)
    full = rows["full precision (LoRA, B = 0)"]["perplexity"]
    plain = rows["QLoRA (NF4, B = 0)"]
    print(f"eval max length {a.max_length}, {plain['eval_tokens']} target tokens\n")
    print("| start | ‖W − start‖_F (sum over layers) | eval perplexity | Δ to full precision |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        err = r.get("error_loftq", r.get("error_qlora"))
        if name.startswith("QLoRA (NF4"):
            err = next((x["error_qlora"] for x in rows.values() if "error_qlora" in x), None)
        e = "-" if err is None else f"{err:.2f}"
        print(f"| {name} | {e} | {r['perplexity']:.4f} | {r['perplexity'] - full:+.4f} |")


if __name__ == "__main__":
    main()
