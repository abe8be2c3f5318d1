"""Training steps eager beside ``--compile`` (regional, ``model/compile.py``) on the CPU.

A small random Llama (the shape below, 4 decoder layers), an adapter of ``--method``
(default LoRA r=8 on every linear layer, dropout 0), batch 4 x 128 tokens, the LM loss,
AdamW. Two models with the same weights in one process: the eager one and the one whose
decoder layers are compiled with inductor. The first compiled step includes compiling
(reported as compile time: that step less an eager step); then the two take their steps
alternately, so the shared machine's load falls on both alike, and the step times are
reported as medians with min-max and the ratio compiled / eager.

    python bench/compile.py                  # ~5 min on the 2-core machine (compiling)
    python bench/compile.py --method dora --precision bf16 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from peftlab.methods import METHODS, get_method
from peftlab.model.compile import compile_layers
from peftlab.model.inject import inject

SHAPE = dict(
    vocab_size=2048,
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)


def make(method: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE))
    opts = {"dropout": 0.0} if "dropout" in METHODS[method].config_cls.__dataclass_fields__ else {}
    inject(model, get_method(method, **opts), base_model="bench")
    model.config.use_cache = False
    return model.train()


def stepper(model, precision: str, batch: int, length: int):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, SHAPE["vocab_size"], (batch, length), generator=g)

    def step() -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="lora", choices=sorted(METHODS))
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    eager_model, comp_model = make(a.method), make(a.method)
    compile_layers(comp_model)
    eager = stepper(eager_model, a.precision, a.batch, a.length)
    comp = stepper(comp_model, a.precision, a.batch, a.length)
    eager()  # warm-up (allocator, first-call costs)
    first_eager = eager()
    first_comp = comp()  # compiles every layer's graph (two: the first layer's and the rest)
    comp()  # a second recompile would show here (it should not)
    times = {"eager": [], "compiled": []}
    for _ in range(a.steps):
        times["eager"].append(eager())
        times["compiled"].append(comp())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{a.method} {a.precision}, batch {a.batch} x {a.length}, {SHAPE['num_hidden_layers']}"
        f" layers of {SHAPE['hidden_size']}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"compile time (first compiled step less an eager one): {first_comp - first_eager:.1f} s")
    for k, v in times.items():
        print(
            f"{k:9s} step: median {med[k] * 1e3:.0f} ms "
            f"(min {min(v) * 1e3:.0f}, max {max(v) * 1e3:.0f})"
        )
    print(f"ratio compiled / eager: {med['compiled'] / med['eager']:.2f}")


if __name__ == "__main__":
    main()
