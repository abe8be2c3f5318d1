"""Cost of one training step per method: peftlab beside Hugging Face peft.

A Llama-shaped random model of ~191M parameters (hidden 1024, 12 layers, 16 heads,
ffn 2048, vocab 32000), batch 4 x 256 tokens, fp32, AdamW. Every configuration runs in
its own process (peak RSS is a per-process high-water mark), peftlab and peft
alternating, and reports the median step time (min-max) over the timed steps and the
process's peak memory.

Both sides label every token, so the output head costs the same and the difference is
the method's own work. Run it alone on the machine:

    python bench/step_cost.py                       # all methods, markdown table
    python bench/step_cost.py --methods dora --steps 3
    python bench/step_cost.py --model embedded --methods lora,vera,oft,loha,lokr
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPE = dict(
    vocab_size=32000,
    hidden_size=1024,
    intermediate_size=2048,
    num_hidden_layers=12,
    num_attention_heads=16,
    num_key_value_heads=16,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)
BATCH, SEQ = 4, 256
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Same options on both sides (peft's names on the right).
OPTIONS = {
    "lora": (
        {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ALL_LINEAR},
        {
            "peft_type": "LORA",
            "r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.0,
            "target_modules": ALL_LINEAR,
        },
    ),
    "dora": (
        {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ALL_LINEAR},
        {
            "peft_type": "LORA",
            "r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.0,
            "target_modules": ALL_LINEAR,
            "use_dora": True,
        },
    ),
    "ia3": (
        {},
        {
            "peft_type": "IA3",
            "target_modules": ["k_proj", "v_proj", "down_proj"],
            "feedforward_modules": ["down_proj"],
        },
    ),
    "adalora": (
        {
            "init_r": 16,
            "target_r": 8,
            "alpha": 32,
            "dropout": 0.0,
            "target_modules": ALL_LINEAR,
            "tinit": 0,
            "tfinal": 0,
            "deltaT": 1,
        },
        {
            "peft_type": "ADALORA",
            "init_r": 16,
            "target_r": 8,
            "lora_alpha": 32,
            "lora_dropout": 0.0,
            "target_modules": ALL_LINEAR,
            "tinit": 0,
            "tfinal": 0,
            "deltaT": 1,
            "total_step": 1000,
        },
    ),
    "vera": (
        {"r": 256, "dropout": 0.0, "target_modules": ALL_LINEAR},
        {"peft_type": "VERA", "r": 256, "vera_dropout": 0.0, "target_modules": ALL_LINEAR},
    ),
    "oft": (
        {"oft_block_size": 32, "target_modules": ALL_LINEAR},
        {"peft_type": "OFT", "oft_block_size": 32, "r": 0, "target_modules": ALL_LINEAR},
    ),
    "loha": (
        {"r": 8, "alpha": 16, "target_modules": ALL_LINEAR},
        {"peft_type": "LOHA", "r": 8, "alpha": 16, "target_modules": ALL_LINEAR},
    ),
    "lokr": (
        {"r": 8, "alpha": 16, "target_modules": ALL_LINEAR},
        {"peft_type": "LOKR", "r": 8, "alpha": 16, "target_modules": ALL_LINEAR},
    ),
}


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_model(model: str = "random"):
    """The random 191M Llama (``random``) or the embedded SmolLM2-135M (``embedded``),
    fp32 either way."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if model == "embedded":
        from peftlab.model.load import resolve_model_path

        path = resolve_model_path("embedded")
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).train()
    return LlamaForCausalLM(LlamaConfig(**SHAPE)).train()


def run_one(
    method: str,
    impl: str,
    steps: int,
    warmup: int,
    device: str = "cpu",
    batch: int = BATCH,
    seq: int = SEQ,
    model_name: str = "random",
) -> dict:
    """One configuration in this process: returns times and peak memory."""
    import contextlib

    import torch

    ours, theirs = OPTIONS[method]
    model = build_model(model_name).to(device)
    if impl == "peftlab":
        from peftlab.methods import get_method
        from peftlab.model.inject import inject
        from peftlab.training.plan import Plan

        m = get_method(method, **ours)
        inject(model, m)
        plan = Plan(batch, 1, 10**6, 10**6, 1000, 0)
        extra = lambda: m.extra_loss(model)  # noqa: E731
        hook = lambda step: m.on_step_end(model, step, plan)  # noqa: E731
    else:
        import peft

        model = peft.get_peft_model(
            model, peft.get_peft_config({**theirs, "task_type": "CAUSAL_LM"})
        )
        extra = lambda: None  # noqa: E731  (peft adds AdaLoRA's orth loss in forward)
        hook = (
            (lambda step: model.base_model.update_and_allocate(step))
            if method == "adalora"
            else (lambda step: None)
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(1)
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (batch, seq), generator=g).to(device)
    cuda = device.startswith("cuda")
    # CPU: fp32 as the issue asks. GPU: bf16 autocast, the setting people train with there.
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    )
    times = []
    for step in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast():
            loss = model(input_ids=ids, labels=ids).loss
            e = extra()
            if e is not None:
                loss = loss + e
        loss.backward()
        opt.step()
        hook(step + 1)
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()
    return {
        "method": method,
        "impl": impl,
        "times": times,
        "peak_rss": peak,
        "device": device,
        "batch": batch,
        "seq": seq,
        "trainable": sum(p.numel() for p in params),
        "threads": torch.get_num_threads(),
    }


def spawn(method: str, impl: str, a) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        method,
        impl,
        "--steps",
        str(a.steps),
        "--warmup",
        str(a.warmup),
        "--device",
        a.device,
        "--batch",
        str(a.batch),
        "--seq",
        str(a.seq),
        "--model",
        a.model,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    if out.returncode != 0:
        return {"method": method, "impl": impl, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(r: dict) -> tuple[str, str]:
    if "error" in r:
        return "failed", r["error"][:60]
    t = r["times"]
    return (
        f"{statistics.median(t):.2f} s ({min(t):.2f}-{max(t):.2f})",
        f"{r['peak_rss'] / 2**30:.2f} GiB",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "IMPL"))
    ap.add_argument("--methods", default="lora,dora,ia3,adalora")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--seq", type=int, default=SEQ)
    ap.add_argument(
        "--model", choices=("random", "embedded"), default="random", help="see build_model"
    )
    a = ap.parse_args()
    if a.one:
        r = run_one(a.one[0], a.one[1], a.steps, a.warmup, a.device, a.batch, a.seq, a.model)
        print(json.dumps(r))
        return
    rows = []
    for method in a.methods.split(","):
        # alternate which side goes first, so drift in machine load hits both
        order = ("peftlab", "peft") if len(rows) % 2 == 0 else ("peft", "peftlab")
        res = {impl: spawn(method, impl, a) for impl in order}
        rows.append((method, res))
        print(json.dumps(res), file=sys.stderr, flush=True)
    what = "peak GPU memory allocated" if a.device.startswith("cuda") else "peak RSS"
    print(
        f"model {a.model}, device {a.device}, batch {a.batch} x {a.seq} tokens, "
        f"{a.steps} timed steps after {a.warmup} warm-up; memory = {what}\n"
    )
    print(
        "| method | trainable | peftlab step | peft step | time ratio | peftlab peak "
        "| peft peak | memory ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, res in rows:
        ours, theirs = res["peftlab"], res["peft"]
        ratio_t = ratio_m = "-"
        if "error" not in ours and "error" not in theirs:
            ratio_t = f"{statistics.median(ours['times']) / statistics.median(theirs['times']):.2f}"
            ratio_m = f"{ours['peak_rss'] / theirs['peak_rss']:.2f}"
        print(
            f"| {method} | {ours.get('trainable', '-'):,} | {fmt(ours)[0]} | "
            f"{fmt(theirs)[0]} | {ratio_t} | {fmt(ours)[1]} | {fmt(theirs)[1]} | {ratio_m} |"
        )


if __name__ == "__main__":
    main()
