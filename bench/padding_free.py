"""Padded beside padding-free batches (``--padding-free``): optimiser-step time on the CPU.

The embedded SmolLM2-135M-Instruct, LoRA r=16 alpha 32 dropout 0.05 on every linear
layer of the decoder, ``../shared/data/alpaca_en_demo.json`` at max length 512, batch 8,
the run's own precision (bf16 autocast where the CPU has native bf16), response-only
head and chunked loss. The first ``--batches`` batches of epoch 0, as a run would see
them, each step taken three ways in the same process (the same model, its attention
switched; which goes first rotates), ``--repeats`` times:

- padded: ``collate`` and transformers' SDPA (today's path);
- varlen: ``flatten`` and ``peftlab_varlen`` (SDPA per record: ``--padding-free`` on CPU);
- sdpa-mask: ``flatten`` and transformers' SDPA with the block-diagonal mask it builds
  from the restarting ``position_ids`` (the alternative not taken).

Reported per setting: the median step time of each (min-max; CPU seconds of the
process by default, ``--wall`` for wall time), the median per-batch
ratio to padded, and the share of the padded batch that is padding; first, the share
of padding over the whole epoch (a count, not a timing). Settings:
random batches and length-grouped ones (the default), each with the CPU's default
2,048-token budget and with no budget (one piece per step).

Run it alone (the machine's other work shows in the spread):

    python bench/padding_free.py                       # ~15 min on 2 shared cores
    python bench/padding_free.py --batches 4 --repeats 2 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data" / "alpaca_en_demo.json"
if not DATA.is_file():
    DATA = Path("/work/shared/data/alpaca_en_demo.json")


class _NoAccelerate:
    """What the loop's step asks of accelerate, in one process."""

    @staticmethod
    def backward(loss):
        loss.backward()

    @staticmethod
    def no_sync(model):
        return contextlib.nullcontext()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wall", action="store_true", help="wall time, not CPU time")
    ap.add_argument("--verbose", action="store_true", help="print every step's time")
    args = ap.parse_args()

    import torch

    from peftlab import build_config
    from peftlab.data.batching import epoch_batches, token_pieces
    from peftlab.model.padding_free import use_padding_free
    from peftlab.training.distributed import Dist
    from peftlab.training.loop import _step, _step_batches
    from peftlab.training.session import open_session

    torch.manual_seed(0)
    # One thread by default: on a shared machine, threads that wait for each other at
    # every op's barrier measure the neighbours more than the step.
    torch.set_num_threads(args.threads)
    # CPU seconds of this process by default: on a machine shared with other work, wall
    # time measures the neighbours; the CPU time a step consumes much less so.
    clock = time.perf_counter if args.wall else time.process_time
    cfg = build_config(
        dataset=str(DATA),
        max_length=512,
        batch_size=8,
        r=16,
        alpha=32,
        dropout=0.05,
        target_modules="all-linear",
        progress=False,
    )
    s = open_session(cfg, new_adapter=True)
    model, method = s.model.train(), s.adapter.method
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    dist = Dist()
    pad_id = s.tokenizer.pad_token_id
    examples = s.train_data.examples
    lengths = [len(e.input_ids) for e in examples]
    print(
        f"precision {s.precision}; {len(examples)} records; torch threads {torch.get_num_threads()}"
    )

    print("| batches | token budget | padding over the epoch (positions) |")
    print("|---|---|---|")
    for group in (False, True):
        for budget in (2048, 0):
            real = padded = 0
            for b in epoch_batches(lengths, 8, 42, 0, group=group):
                for piece in token_pieces([examples[i] for i in b], budget):
                    real += sum(len(e.input_ids) for e in piece)
                    padded += len(piece) * max(len(e.input_ids) for e in piece)
            kind = "length-grouped" if group else "random"
            print(f"| {kind} | {budget or 'none'} | {1 - real / padded:.1%} of {padded:,} |")

    modes = ("padded", "varlen", "sdpa-mask")

    def step(exs, budget, mode) -> float:
        if mode == "varlen":
            use_padding_free(model, s.device)
        else:  # padded, or flattened with transformers' block-diagonal mask
            model.set_attn_implementation("sdpa")
        flat = mode != "padded"
        batches, n_targets, _ = _step_batches(dist, [exs], pad_id, budget, flat)
        t0 = clock()
        loss = _step(_NoAccelerate, model, method, batches, s, scaler, n_targets)
        float(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        took = clock() - t0
        if args.verbose:
            print(f"  {mode} budget {budget}: {took:.2f} s", flush=True)
        return took

    def fmt(xs):
        return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"

    warm = sorted(examples, key=lambda e: len(e.input_ids))[:8]
    for mode in modes if args.batches else ():  # warm-up, untimed
        step(warm, 0, mode)
    unit = "wall s" if args.wall else "CPU s"
    print(f"| batches | token budget | padding | {' | '.join(modes)} ({unit}) | ratios to padded |")
    print("|---|---|---|---|---|---|---|")
    for group in (False, True):
        order = epoch_batches(lengths, 8, 42, 0, group=group)[: args.batches]
        if not order:  # --batches 0: the padding counts only
            continue
        for budget in (2048, 0):
            times: dict[str, list[float]] = {m: [] for m in modes}
            ratios: dict[str, list[float]] = {m: [] for m in modes[1:]}
            pad_share = []
            for r in range(args.repeats):
                for i, b in enumerate(order):
                    exs = [examples[j] for j in b]
                    width = max(len(e.input_ids) for e in exs)
                    pad_share.append(1 - sum(len(e.input_ids) for e in exs) / (8 * width))
                    turn = (i + r) % len(modes)  # which mode goes first rotates
                    took = {m: step(exs, budget, m) for m in modes[turn:] + modes[:turn]}
                    for m in modes:
                        times[m].append(took[m])
                    for m in modes[1:]:
                        ratios[m].append(took[m] / took["padded"])
            print(
                f"| {'length-grouped' if group else 'random'} | {budget or 'none'} "
                f"| {statistics.mean(pad_share):.0%} | "
                + " | ".join(fmt(times[m]) for m in modes)
                + " | "
                + ", ".join(f"{m} {fmt(ratios[m])}" for m in modes[1:])
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()
