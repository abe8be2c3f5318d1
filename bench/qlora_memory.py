"""QLoRA's promise, measured: peak memory of loading a checkpoint as QLoRA and taking a
training step, peftlab beside peft + bitsandbytes, and beside plain LoRA.

Two checkpoints with random weights, written once by this script as safetensors:

- ``small``: the ~191M Llama-shaped model of ``step_cost.py`` (hidden 1024, 12 layers,
  ffn 2048, vocab 32000), fp32; batch 4 x 256, fp32 compute, no checkpointing.
- ``7b``: Mistral-7B-shaped (hidden 4096, 32 layers, 32 heads, 8 KV heads, ffn 14336,
  vocab 32000), bf16 in ~4.9 GB shards (14.5 GB); batch 1 x 256, bf16 compute, gradient
  checkpointing.

Each configuration runs in its own process, which loads the checkpoint from disk (as a
user would), adds LoRA r=16 to every linear layer of the decoder, and runs one AdamW
step with every token labelled (peftlab's configurations with peftlab's own training
loss, ``training/loss.py``; peft's with transformers' ``labels=`` loss). Reported: the
process's peak RSS (the whole run: load and step), load time and step time. Configurations:

- ``peftlab-qlora``: ``--method qlora`` (NF4 + double quantization, streamed load, and
  the lean allocator setting that ``allocator: auto`` gives QLoRA on CPU);
- ``peft-bnb``: transformers ``from_pretrained`` with a bitsandbytes 4-bit NF4 config
  (double quantization), ``prepare_model_for_kbit_training``, ``get_peft_model``, as the
  QLoRA recipe in peft's documentation;
- ``peftlab-lora``: peftlab's plain LoRA on the full-precision checkpoint dtype.

    python bench/qlora_memory.py --model small      # ~3 min
    python bench/qlora_memory.py --model 7b         # writes 14.5 GB once; ~20 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "small": dict(
        arch="llama",
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=16,
        num_key_value_heads=16,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    ),
    "7b": dict(
        arch="mistral",
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    ),
}
STEPS = 3  # per process: one warm-up step, then the median of the others
RUN = {
    "small": dict(dtype="float32", batch=4, seq=256, grad_ckpt=False),
    "7b": dict(dtype="bfloat16", batch=1, seq=256, grad_ckpt=True),
}
SHARD_BYTES = 4_900_000_000
CONFIGS = (
    "peftlab-qlora",
    "peft-bnb",
    "peftlab-lora",
    "peftlab-qlora-bnbkernel",
    "peftlab-qlora-torchkernel",
)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_checkpoint(model: str, out: Path) -> None:
    """Random weights (normal, std 0.02; norms 1), tensor by tensor, in shards."""
    import torch
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    if (out / "model.safetensors.index.json").is_file():
        return
    shape = dict(SHAPES[model])
    arch = shape.pop("arch")
    dtype = getattr(torch, RUN[model]["dtype"])
    cfg = AutoConfig.for_model(arch, **shape, torch_dtype=RUN[model]["dtype"])
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(cfg)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    shards, cur, size, weight_map = [], {}, 0, {}

    def flush():
        nonlocal cur, size
        name = f"model-{len(shards) + 1:05d}.safetensors"
        save_file(cur, str(tmp / name), metadata={"format": "pt"})
        shards.append(name)
        weight_map.update({k: name for k in cur})
        cur, size = {}, 0

    for name, p in skeleton.named_parameters():
        t = (
            torch.ones(p.shape, dtype=dtype)
            if name.endswith("norm.weight")
            else (torch.randn(p.shape, generator=g) * 0.02).to(dtype)
        )
        if size + t.numel() * t.element_size() > SHARD_BYTES and cur:
            flush()
        cur[name] = t
        size += t.numel() * t.element_size()
    flush()
    n = len(shards)
    for _i, name in enumerate(shards):  # the usual "-0000i-of-0000n" names
        final = name.replace(".safetensors", f"-of-{n:05d}.safetensors")
        (tmp / name).rename(tmp / final)
        weight_map = {k: (final if v == name else v) for k, v in weight_map.items()}
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1)
    )
    cfg.save_pretrained(tmp)
    tmp.rename(out)


def load(config: str, path: Path, run: dict):
    import torch

    dtype = getattr(torch, run["dtype"])
    if config.startswith("peftlab-qlora"):
        from peftlab.methods import get_method
        from peftlab.model.inject import inject
        from peftlab.quant.stream import load_quantized

        kernel = {"bnbkernel": "bitsandbytes", "torchkernel": "torch"}.get(
            config.rsplit("-", 1)[-1], "auto"
        )
        m = get_method(
            "qlora", r=16, alpha=32, dropout=0.0, target_modules="all-linear", nf4_kernel=kernel
        )
        model = load_quantized(path, dtype)
        inject(model, m)
        return model
    if config == "peftlab-lora":
        from peftlab.methods import get_method
        from peftlab.model.inject import inject
        from peftlab.model.load import load_model

        model = load_model(path, dtype=dtype, device="cpu")
        inject(model, get_method("lora", r=16, alpha=32, dropout=0.0, target_modules="all-linear"))
        return model
    import peft
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=q, dtype=dtype, device_map="cpu"
    )
    model = peft.prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=run["grad_ckpt"],
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return peft.get_peft_model(
        model,
        peft.LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )


def child(config: str, model_name: str, path: Path) -> dict:
    import torch

    run = RUN[model_name]
    if config.startswith("peftlab"):  # what `peftlab train` does with allocator: auto
        from peftlab.host.heap import set_allocator
        from peftlab.methods import METHODS

        set_allocator("auto", METHODS[config.split("-")[1]].memory_first)
    if config.endswith("bnbkernel"):
        from peftlab.quant.kernels import resolve_kernel

        assert resolve_kernel("bitsandbytes", torch.device("cpu")) == "bitsandbytes"
    t0 = time.perf_counter()
    model = load(config, path, run)
    load_s = time.perf_counter() - t0
    load_peak = peak_rss()
    model.config.use_cache = False
    if run["grad_ckpt"] and config != "peft-bnb":  # peft's recipe enabled it above
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(
        0,
        SHAPES[model_name]["vocab_size"],
        (run["batch"], run["seq"]),
        generator=torch.Generator().manual_seed(1),
    )
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if run["dtype"] == "bfloat16"
        else contextlib.nullcontext
    )
    steps = []
    for _ in range(STEPS):
        t1 = time.perf_counter()
        with autocast():
            if config.startswith("peftlab"):  # peftlab's training loss (training/loss.py)
                from peftlab.training.loss import response_nll

                batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
                nll, n = response_nll(model, batch)
                loss = nll / n
            else:
                loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        steps.append(time.perf_counter() - t1)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss {float(loss)}")
    # the first step pays one-time costs (allocator warm-up, lazy inits); the rest are
    # what an epoch is made of
    step_s = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
    return {
        "config": config,
        "load_s": load_s,
        "step_s": step_s,
        "first_step_s": steps[0],
        "load_peak": load_peak,
        "peak": peak_rss(),
        "loss": float(loss),
        "trainable": sum(p.numel() for p in params),
    }


def spawn(config: str, model_name: str, path: Path, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "--model", model_name, "--dir", str(path), "--child", config]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    except subprocess.TimeoutExpired:
        return {"config": config, "error": f"did not finish in {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        why = (
            "killed (out of memory?)"
            if p.returncode in (-9, 137)
            else (p.stderr.strip().splitlines() or ["?"])[-1][:160]
        )
        return {
            "config": config,
            "error": f"exit {p.returncode}: {why}",
            "wall_s": time.perf_counter() - t0,
        }
    return {**json.loads(lines[-1][7:]), "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(SHAPES), default="small")
    ap.add_argument("--dir", type=Path, help="checkpoint directory (default: under $TMPDIR)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--repeats", type=int, default=3, help="processes per configuration")
    ap.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    ap.add_argument("--write-checkpoint", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    path = a.dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"peftlab-bench-{a.model}"
    if a.write_checkpoint:
        return write_checkpoint(a.model, path)
    if a.child:
        print("RESULT " + json.dumps(child(a.child, a.model, path)), flush=True)
        return
    t0 = time.perf_counter()
    # In a child process: Linux carries a process's peak RSS across fork and exec into
    # its children, so the measuring processes must come from a parent that stays small.
    subprocess.run(
        [sys.executable, __file__, "--model", a.model, "--dir", str(path), "--write-checkpoint"],
        check=True,
    )
    print(f"checkpoint {path} ready ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    runs: dict[str, list[dict]] = {}
    for rep in range(a.repeats):  # alternating: every configuration once per round
        for config in a.configs.split(","):
            r = spawn(config, a.model, path, a.timeout)
            runs.setdefault(config, []).append(r)
            print(json.dumps({"round": rep, **r}), file=sys.stderr, flush=True)
    gib = 2**30

    def med(rs, key, scale=1.0, fmt="{:.2f}"):
        xs = [r[key] / scale for r in rs]
        m = statistics.median(xs)
        return fmt.format(m) + (
            f" ({fmt.format(min(xs))}–{fmt.format(max(xs))})" if len(xs) > 1 else ""
        )

    ok = {c: [r for r in rs if "error" not in r] for c, rs in runs.items()}
    ref = ok.get("peft-bnb")
    ref_peak = statistics.median(r["peak"] for r in ref) if ref else None
    ref_step = statistics.median(r["step_s"] for r in ref) if ref else None
    print(
        f"| {a.model} ({a.repeats} processes each, alternating) | peak RSS (load + "
        "step) | ÷ peft+bnb | step (median of steps 2-3) | ÷ peft+bnb | first step | "
        "load |\n|---|---|---|---|---|---|---|"
    )
    for config, rs in ok.items():
        if not rs:
            print(f"| {config} | failed: {runs[config][0]['error']} | | | | | |")
            continue
        peak = statistics.median(r["peak"] for r in rs)
        step = statistics.median(r["step_s"] for r in rs)
        print(
            f"| {config} | {med(rs, 'peak', gib)} GiB | "
            f"{peak / ref_peak if ref_peak else float('nan'):.2f} | "
            f"{med(rs, 'step_s')} s | {step / ref_step if ref_step else float('nan'):.2f} "
            f"| {med(rs, 'first_step_s', fmt='{:.1f}')} s | "
            f"{med(rs, 'load_s', fmt='{:.0f}')} s |"
        )


if __name__ == "__main__":
    main()
