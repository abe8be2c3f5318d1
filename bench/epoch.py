"""One epoch of LoRA SFT end to end: peftlab beside transformers Trainer + peft.

The embedded SmolLM2-135M-Instruct, ``../shared/data/alpaca_en_demo.json`` (999 Stanford
Alpaca records; peftlab's fixed 10% hold-out is the eval set of both sides), LoRA r=16,
alpha 32, dropout 0.05 on every linear layer of the decoder, batch 8, lr 3e-4, AdamW,
5% linear warm-up then cosine, clipping at 1.0, max length 512, seed 42. Both sides get
the very same token ids and response-only label masks (peftlab's tokenisation).

- peftlab: its defaults (bf16 autocast where the CPU has native bf16, response-only
  output head, chunked cross-entropy, length-grouped batches with token-weighted loss,
  micro-batches cut to a 2048-token budget, mimalloc as the ``peftlab`` command runs it:
  ``PEFTLAB_MALLOC=system`` for glibc's); the allocator setting
  can be varied with ``PEFTLAB_BENCH_ALLOCATOR=trim|lean|default`` (default: auto), any
  other option with ``PEFTLAB_BENCH_SET='{"group_by_length": false}'`` (JSON).
- Hugging Face: ``Trainer`` with its documented defaults on CPU (fp32, random batches
  padded by ``DataCollatorForSeq2Seq``, no packing, no gradient checkpointing).

Each run is its own process (peak RSS is a per-process high-water mark); the two sides
alternate, ``--repeats`` times. Reported: training wall time of the epoch, whole-process
wall time, peak RSS, real (non-padding) training tokens per second, and the final
held-out perplexity, computed for both models by the same fp32 function. Run it alone:

    python bench/epoch.py --repeats 3              # ~2 h on the 2-core machine
    python bench/epoch.py --repeats 1 --limit 80   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "alpaca_en_demo.json"
SETTINGS = dict(
    batch_size=8,
    lr=3e-4,
    r=16,
    alpha=32,
    dropout=0.05,
    max_length=512,
    warmup_ratio=0.05,
    max_grad_norm=1.0,
    seed=42,
)


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_data(limit: int | None):
    """(train examples, eval examples, pad id, model dir): the same for both sides."""
    from transformers import AutoTokenizer

    from peftlab.data.alpaca import encode
    from peftlab.data.sources import load_splits
    from peftlab.model.load import resolve_model_path

    model_dir = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(model_dir)
    splits = load_splits(str(DATA), 0.1)
    train = splits.train[:limit] if limit else splits.train
    tr = encode(tok, train, SETTINGS["max_length"]).examples
    ev = encode(tok, splits.eval, SETTINGS["max_length"]).examples
    return tr, ev, tok.pad_token_id, model_dir, tok


def heldout_perplexity(model, ev, pad_id) -> float:
    from peftlab.training.evaluate import perplexity

    return perplexity(model, ev, pad_id, batch_size=16, device="cpu")["perplexity"]


def run_peftlab(limit: int | None, work: Path) -> dict:
    import peftlab
    from peftlab.api import load_adapter

    _, ev, pad_id, _, _ = load_data(limit)
    s = SETTINGS
    # A quick look (--limit) trains for as many steps as the HF side's subset takes.
    overrides = {"max_steps": -(-limit // s["batch_size"])} if limit else {}
    overrides.update(json.loads(os.environ.get("PEFTLAB_BENCH_SET", "{}")))
    t0 = time.perf_counter()
    res = peftlab.train(
        method="lora",
        dataset=str(DATA),
        output=str(work / "run"),
        epochs=1,
        batch_size=s["batch_size"],
        lr=s["lr"],
        r=s["r"],
        alpha=s["alpha"],
        dropout=s["dropout"],
        target_modules="all-linear",
        max_length=s["max_length"],
        warmup_ratio=s["warmup_ratio"],
        max_grad_norm=s["max_grad_norm"],
        seed=s["seed"],
        eval_every=0,
        save_every=0,
        exact_match_limit=0,
        progress=False,
        allocator=os.environ.get("PEFTLAB_BENCH_ALLOCATOR", "auto"),
        **overrides,
    )
    peak = peak_rss_bytes()
    model = load_adapter(work / "run")
    return {
        "train_s": res["train_seconds"],
        "peak_rss": peak,
        "after_train_s": time.perf_counter() - t0,
        "real_tokens": res["train_tokens"],
        "steps": res["plan"]["total_steps"],
        "precision": res["precision"],
        "phases": res.get("memory_phases"),
        "allocator": res.get("allocator"),
        "ppl": heldout_perplexity(model, ev, pad_id),
    }


def run_hf(limit: int | None, work: Path) -> dict:
    import math

    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    s = SETTINGS
    t0 = time.perf_counter()
    tr, ev, pad_id, model_dir, tok = load_data(limit)
    torch.manual_seed(s["seed"])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=s["r"],
            lora_alpha=s["alpha"],
            lora_dropout=s["dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for e in tr:
        rows["input_ids"].append(e.input_ids)
        rows["attention_mask"].append([1] * len(e.input_ids))
        rows["labels"].append([-100] * e.n_prompt + e.input_ids[e.n_prompt :])
    steps = math.ceil(len(tr) / s["batch_size"])
    args = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=s["batch_size"],
        learning_rate=s["lr"],
        num_train_epochs=1,
        lr_scheduler_type="cosine",
        warmup_steps=int(round(steps * s["warmup_ratio"])),
        max_grad_norm=s["max_grad_norm"],
        weight_decay=0.0,
        seed=s["seed"],
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=max(1, steps // 10),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(rows),
        data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, padding=True),
    )
    ts = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - ts
    peak = peak_rss_bytes()
    after = time.perf_counter() - t0
    return {
        "train_s": train_s,
        "peak_rss": peak,
        "after_train_s": after,
        "real_tokens": sum(len(e.input_ids) for e in tr),
        "steps": steps,
        "precision": "fp32",
        "ppl": heldout_perplexity(model.base_model.model, ev, pad_id),
    }


def child(side: str, limit: int | None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"epoch-{side}-") as d:
        res = (run_peftlab if side == "peftlab" else run_hf)(limit, Path(d))
    res["process_s"] = time.perf_counter() - t0
    res["tok_s"] = res["real_tokens"] / res["train_s"]
    print("RESULT " + json.dumps(res), flush=True)


def spawn(side: str, limit: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", side] + (["--limit", str(limit)] if limit else [])
    t0 = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if side == "peftlab":  # the allocator the peftlab command runs on (host/malloc.py)
        from peftlab.host import malloc

        if malloc.wanted():
            env = malloc.preload_env(env) or env
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"{side} run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    res = json.loads(lines[-1][7:])
    res["wall_s"] = wall
    return res


def fmt(vals: list[float], unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    v = [x / scale for x in vals]
    return f"{statistics.median(v):.{digits}f}{unit} ({min(v):.{digits}f}-{max(v):.{digits}f})"


def table(runs: dict[str, list[dict]]) -> str:
    p, h = runs["peftlab"], runs["hf"]
    gib = 2**30
    rows = [
        ("epoch training wall time", "train_s", " s", 1, 0),
        ("whole process (load, train, save, eval)", "wall_s", " s", 1, 0),
        ("peak RSS", "peak_rss", " GiB", gib, 2),
        ("real tokens / s (training)", "tok_s", "", 1, 0),
        ("held-out perplexity (fp32)", "ppl", "", 1, 3),
    ]
    out = [
        "| | peftlab | transformers Trainer + peft | ratio (peftlab ÷ HF) |",
        "|---|---|---|---|",
    ]
    for label, key, unit, scale, digits in rows:
        ratio = statistics.median(x[key] for x in p) / statistics.median(x[key] for x in h)
        out.append(
            f"| {label} | {fmt([x[key] for x in p], unit, scale, digits)} | "
            f"{fmt([x[key] for x in h], unit, scale, digits)} | {ratio:.2f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--limit",
        type=int,
        default=None,
        help="train on only the first N training records (a quick look)",
    )
    ap.add_argument("--child", choices=["peftlab", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write every run's figures to this file")
    ap.add_argument("--only", choices=["peftlab", "hf"], help="run one side only")
    ap.add_argument(
        "--table",
        nargs="+",
        metavar="JSON",
        help="print the table of runs saved by --json (files merged)",
    )
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.limit)
    if a.table:
        merged: dict[str, list[dict]] = {"peftlab": [], "hf": []}
        for f in a.table:
            for side, runs in json.loads(Path(f).read_text()).items():
                merged[side] += runs
        return print(table(merged))
    if not DATA.is_file():
        sys.exit(f"{DATA} is missing; this benchmark needs the alpaca_en_demo records")
    runs: dict[str, list[dict]] = {"peftlab": [], "hf": []}
    for i in range(a.repeats):
        order = ("peftlab", "hf") if i % 2 == 0 else ("hf", "peftlab")
        order = [side for side in order if a.only in (None, side)]
        for side in order:
            r = spawn(side, a.limit)
            runs[side].append(r)
            print(
                f"repeat {i + 1} {side}: train {r['train_s']:.0f} s, peak "
                f"{r['peak_rss'] / 2**30:.2f} GiB, {r['tok_s']:.0f} tok/s, "
                f"ppl {r['ppl']:.3f}"
                + (
                    f"; allocator {r['allocator']}, peak after "
                    "each phase "
                    + ", ".join(f"{k} {v / 2**30:.2f}" for k, v in r["phases"].items())
                    if r.get("phases")
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
            if a.json:
                Path(a.json).write_text(json.dumps(runs, indent=1))
    if all(runs.values()):
        print(table(runs))


if __name__ == "__main__":
    main()
