"""How close peftlab's LoRA training step runs to this machine's matmul peak.

1. The dense matmul peak, fp32 and bf16, with the threads training uses: the best of a
   few large shapes (square 2048/4096 and the model's own projection shapes), median of
   repeated timings.
2. The model-FLOPs utilisation (MFU) of peftlab's LoRA step (the training loop's own
   ``_step``: response-only head, chunked cross-entropy, AdamW) on the embedded
   SmolLM2-135M-Instruct and on a ~191M Llama-shaped random model, every position
   labelled, no padding. FLOPs counted (frozen base): 4·N·T for the base's matmuls
   (forward, and the input gradient in backward; no weight gradient), 6·N_adapter·T for
   LoRA's own, and 6·L·S·d·T for causal attention scores and values (fwd 2·S·d per
   token and layer for each of QKᵀ and AV over the causal half, backward twice that).
   N counts matmul weights: every projection plus the output head (the input embedding
   is a lookup, no FLOPs).

    python bench/roofline.py                 # ~4 min on the 2-core machine, run alone
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import time
from types import SimpleNamespace

import torch

LLAMA_191M = dict(
    vocab_size=32000,
    hidden_size=1024,
    intermediate_size=2048,
    num_hidden_layers=12,
    num_attention_heads=16,
    num_key_value_heads=16,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def matmul_peak(dtype: torch.dtype, shapes) -> tuple[float, str]:
    """Best median GFLOP/s over ``shapes`` (m, k, n) for ``dtype``."""
    best, where = 0.0, ""
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        reps = max(3, int(2e10 / (2 * m * k * n)))
        t = statistics.median(timed(lambda: a @ b, reps))
        rate = 2 * m * k * n / t / 1e9
        if rate > best:
            best, where = rate, f"{m}x{k} @ {k}x{n}"
    return best, where


def build(model_name: str):
    from peftlab.methods import get_method
    from peftlab.model.inject import inject

    if model_name == "smollm2-135m":
        from peftlab.model.load import load_base

        model, _, _ = load_base(None)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**LLAMA_191M))
    inject(model, get_method("lora", r=16, alpha=32, dropout=0.0, target_modules="all-linear"))
    model.config.use_cache = False
    return model


def step_flops(model, batch: int, seq: int) -> float:
    c = model.config
    # Frozen matmul weights: every nn.Linear (the projections inside adapter layers and
    # the output head, tied to the embedding or not); the adapter's: its trainable ones.
    base = sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad
    )
    adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tokens = batch * seq
    d = c.num_attention_heads * (c.hidden_size // c.num_attention_heads)
    attention = 6 * c.num_hidden_layers * seq * d * tokens
    return 4 * base * tokens + 6 * adapter * tokens + attention


def lora_step_rate(model_name: str, precision: str, batch: int, seq: int, steps: int):
    from accelerate import Accelerator

    from peftlab.methods import get_method
    from peftlab.training.loss import LossOptions

    train_mod = importlib.import_module("peftlab.training.loop")
    model = build(model_name).train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (batch, seq), generator=g)
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    ac = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if precision == "bf16"
        else contextlib.nullcontext
    )
    s = SimpleNamespace(device=torch.device("cpu"), autocast=lambda: ac, loss_options=LossOptions())
    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    method = get_method("lora")

    def one():
        train_mod._step(acc, model, method, [b], s, scaler)
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = timed(one, steps)
    return step_flops(model, batch, seq), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    shapes = [
        (2048, 2048, 2048),
        (4096, 4096, 4096),
        (a.batch * a.seq, 576, 1536),
        (a.batch * a.seq, 1024, 2048),
    ]
    peaks = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peaks[name], where = matmul_peak(dt, shapes)
        print(
            f"peak {name}: {peaks[name]:.0f} GFLOP/s ({where}, {threads} threads)",
            file=sys.stderr,
            flush=True,
        )
    rows = [
        "| model | precision | step (median, min-max) | model TFLOP/step | achieved "
        "GFLOP/s | matmul peak | MFU |",
        "|---|---|---|---|---|---|---|",
    ]
    for model_name in ("smollm2-135m", "llama-191m"):
        for prec in ("fp32", "bf16"):
            flops, t = lora_step_rate(model_name, prec, a.batch, a.seq, a.steps)
            med = statistics.median(t)
            rate = flops / med / 1e9
            rows.append(
                f"| {model_name} | {prec} | {med:.2f} s ({min(t):.2f}-{max(t):.2f}) "
                f"| {flops / 1e12:.2f} | {rate:.0f} | {peaks[prec]:.0f} | "
                f"{rate / peaks[prec]:.0%} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"\nbatch {a.batch} x {a.seq} tokens, LoRA r=16 all-linear, {threads} threads, "
        f"torch {torch.__version__}\n"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
