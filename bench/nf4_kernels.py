"""NF4 dequantization throughput (weights/s), each kernel on the shapes that matter.

- ``nibble`` (round 1's path, rebuilt here as the reference): split each byte into two
  codes, gather each code's level, multiply by the block scale, into a fresh tensor;
- ``pairs``: peftlab's :func:`~peftlab.quant.nf4.dequantize_nf4` (one gather per byte
  from a 256-entry table of level pairs, cache-sized chunks), into a fresh tensor;
- ``pairs+buffer``: the same into a reused buffer (what the 4-bit matmul does:
  ``kernels.workspace``);
- ``bitsandbytes+buffer``: bitsandbytes' kernel through ``kernels.dequantize`` (when
  installed);
- ``compiled``: ``torch.compile`` of the nibble arithmetic (with ``--compile``; its
  first-call compile time is reported apart).

Every kernel's output is checked bit for bit against ``pairs`` before it is timed.
Median of 7 calls after one warm-up, min–max in brackets.

    python bench/nf4_kernels.py [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from peftlab.quant import kernels
from peftlab.quant.nf4 import block_absmax, dequantize_nf4, nf4_levels, quantize_nf4

SHAPES = {"191M ffn (2048x1024)": (2048, 1024), "7B ffn (14336x4096)": (14336, 4096)}


def nibble(q, dtype):
    codes = torch.stack([q.packed >> 4, q.packed & 15], 1).view(-1)[: q.numel].long()
    vals = nf4_levels()[codes].view(-1, q.blocksize)
    return (vals * block_absmax(q)[:, None]).to(dtype).view(q.shape)


def compiled_fn():
    def core(packed, absmax, levels, dtype: torch.dtype):
        hi, lo = levels[(packed >> 4).long()], levels[(packed & 15).long()]
        return (torch.stack([hi, lo], -1).view(-1, 64) * absmax[:, None]).to(dtype)

    return torch.compile(core, dynamic=True)


def timed(fn, n=7):
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    comp = compiled_fn() if args.compile else None
    print("| shape | dtype | kernel | weights/s median (min–max) |\n|---|---|---|---|")
    for label, shape in SHAPES.items():
        q = quantize_nf4(torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 0.02)
        for dtype in (torch.float32, torch.bfloat16):
            ref = dequantize_nf4(q, dtype)
            buf = kernels.workspace(q.shape, dtype, torch.device("cpu"))
            cands = {
                "nibble": lambda: nibble(q, dtype),
                "pairs": lambda: dequantize_nf4(q, dtype),
                "pairs+buffer": lambda: dequantize_nf4(q, dtype, out=buf),
            }
            if kernels.resolve_kernel("bitsandbytes", torch.device("cpu")) == "bitsandbytes":
                cands["bitsandbytes+buffer"] = lambda: kernels.dequantize(
                    q, dtype, "bitsandbytes", out=buf
                )
            if comp is not None:
                t0 = time.perf_counter()
                comp(q.packed, block_absmax(q), nf4_levels(), dtype)
                print(f"(compile, first call: {time.perf_counter() - t0:.1f} s)")
                cands["compiled"] = lambda: comp(q.packed, block_absmax(q), nf4_levels(), dtype)
            for name, fn in cands.items():
                assert torch.equal(fn().reshape(q.shape), ref), name
                rates = [q.numel / t / 1e6 for t in timed(fn)]
                print(
                    f"| {label} | {str(dtype).split('.')[1]} | {name} | "
                    f"{statistics.median(rates):.0f} M ({min(rates):.0f}–{max(rates):.0f}) |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
