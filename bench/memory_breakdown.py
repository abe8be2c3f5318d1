"""Where a training step's memory goes, measured on the embedded model: the tensors
autograd saves for backward by kind (``peftlab.memory.measure``), weights and trainable
state, the loss chunk, and the resident set beside them.

One micro-batch piece of the epoch benchmark's largest shape (4 x 512 tokens, a quarter
of each row prompt), LoRA r=16 alpha 32 dropout 0.05 on every linear layer (as
bench/epoch.py), bf16 autocast. Each configuration in its own process:

    python bench/memory_breakdown.py                       # sdpa and eager attention
    python bench/memory_breakdown.py --one --attn eager    # (what each process runs)

Reported per configuration: resident set after the model is loaded and its weights
touched (one warm-up step), the census of saved tensors by kind, the resident growth at
the end of the forward (saved tensors and what else is live), the peak during the
forward and loss (adds the loss chunk's logits), and the peak in backward.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

GiB = 1 << 30
ROWS, SEQ = 4, 512


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def one(attn: str, allocator: str, method: str) -> dict:
    import torch

    from peftlab.config import build_config
    from peftlab.host.heap import set_allocator, trim_heap
    from peftlab.memory.measure import saved_tensor_census, tensor_bytes
    from peftlab.training.loss import response_nll
    from peftlab.training.session import open_session

    set_allocator(allocator)
    cfg = build_config(
        method=method,
        r=16,
        alpha=32,
        dropout=0.05,
        target_modules="all-linear",
        output="/tmp/unused",
    )
    s = open_session(cfg, new_adapter=True, device=torch.device("cpu"), with_data=False)
    s.model.set_attn_implementation(attn)
    s.model.train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 40000, (ROWS, SEQ), generator=g)
    labels = ids.clone()
    labels[:, : SEQ // 4] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    out = {}
    for _rep in range(2):  # the first touches every weight page; the second is measured
        trim_heap()
        before = _status("VmRSS:")
        _reset_peak()
        with saved_tensor_census(s.model) as census:
            with s.autocast()():
                nll, _ = response_nll(s.model, batch, s.loss_options)
        fwd_end, fwd_peak = _status("VmRSS:"), _status("VmHWM:")
        _reset_peak()
        nll.backward()
        bwd_peak = _status("VmHWM:")
        del nll
        s.model.zero_grad(set_to_none=True)
        out = {
            "attn": attn,
            "allocator": allocator,
            "method": method,
            "rss_before": before,
            "saved": dict(census),
            "fwd_growth": fwd_end - before,
            "fwd_peak": fwd_peak - before,
            "bwd_peak": bwd_peak - before,
            **tensor_bytes(s.model),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", action="store_true")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--allocator", default="lean")
    ap.add_argument("--method", default="lora")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.attn, args.allocator, args.method)))
        return
    rows = []
    for attn in ("sdpa", "eager"):
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "--attn",
                attn,
                "--allocator",
                args.allocator,
                "--method",
                args.method,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    kinds = sorted({k for r in rows for k in r["saved"]}, key=lambda k: -rows[0]["saved"].get(k, 0))
    print(
        f"| part ({ROWS} x {SEQ} tokens, {args.method}, allocator {args.allocator}) | "
        + " | ".join(f"{r['attn']} attention" for r in rows)
        + " |"
    )
    print("|---|" + "---|" * len(rows))

    def line(label, values):
        print(f"| {label} | " + " | ".join(f"{v / GiB:.3f} GiB" for v in values) + " |")

    line("resident set before the step (runtime, weights, caches)", [r["rss_before"] for r in rows])
    line("frozen weights (as stored)", [r["frozen weights"] for r in rows])
    line("trainable parameters", [r["trainable parameters"] for r in rows])
    for k in kinds:
        line(f"saved for backward: {k}", [r["saved"].get(k, 0) for r in rows])
    line("**saved for backward, total**", [sum(r["saved"].values()) for r in rows])
    line("resident growth at the end of the forward", [r["fwd_growth"] for r in rows])
    line("peak growth in forward + loss", [r["fwd_peak"] for r in rows])
    line("peak growth in backward", [r["bwd_peak"] for r in rows])


if __name__ == "__main__":
    main()
