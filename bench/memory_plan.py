"""`peftlab plan` against the measured peak: predicted beside measured peak memory of short
training runs, for every method and full fine-tuning, with and without gradient
checkpointing, on two models:

- ``embedded``: SmolLM2-135M-Instruct (fp32 weights, bf16 autocast on this CPU);
- ``small190``: a ~197M Llama-shaped model with random weights written once by this
  script (hidden 1024, 14 layers, 16 heads, 4 KV heads, ffn 2048, the embedded model's
  49,152-token vocabulary and tokenizer, tied embeddings).

Each run is ``peftlab train`` in its own process on the bundled instructions (4 steps of
batch 8, max length 512, token budget 2048, 32 eval records, exact match on 8; the test's
cheap cases take 3 steps and fewer eval records): the measured figure is its peak resident set
(`results.json`: ``peak_memory_bytes``) and the phase that set it; the prediction is
:func:`peftlab.memory.planner.estimate_run` of the same configuration. Run it alone:

    python bench/memory_plan.py                      # ~20 min on the 2-core machine
    python bench/memory_plan.py --models embedded --methods lora,full --ckpt off
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(
    max_steps=4,
    batch_size=8,
    max_length=512,
    max_eval_records=32,
    exact_match_limit=8,
    max_new_tokens=16,
    save_every=0,
    eval_every=0,
    progress=False,
)
SMALL190 = dict(
    vocab_size=49152,
    hidden_size=1024,
    intermediate_size=2048,
    num_hidden_layers=14,
    num_attention_heads=16,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)


def small190_dir(cache: Path) -> Path:
    """The random ~197M model with the embedded tokenizer, written once."""
    out = cache / "small190"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from peftlab.model.load import load_tokenizer, resolve_model_path

    tok = load_tokenizer(resolve_model_path(None))
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            **SMALL190,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
        )
    )
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def case_config(model: str | None, method: str, ckpt: bool, out: str) -> dict:
    cfg = dict(SETTINGS, method=method, gradient_checkpointing=ckpt, output=out)
    if model:
        cfg["model"] = model
    return cfg


def measure(cfg: dict, work: Path) -> dict:
    path = work / "config.json.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "peftlab", "train", "--config", str(path), "--overwrite"],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    res = json.loads((Path(cfg["output"]) / "results.json").read_text())
    phases = res["memory_phases"]
    peak = res["peak_memory_bytes"]
    phase = next(k for k, v in phases.items() if v >= peak) if phases else "?"
    return {
        "peak": peak,
        "phase": phase,
        "phases": phases,
        "step_seconds": res["train_seconds"] / max(1, res["plan"]["total_steps"]),
    }


def predict(cfg: dict) -> dict:
    from peftlab.config import build_config
    from peftlab.memory.planner import data_shape, estimate_run

    c = build_config(**{k: v for k, v in cfg.items() if k != "output"})
    est = estimate_run(c, data_shape(c))
    return est.to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="embedded,small190")
    ap.add_argument("--methods", default="lora,qlora,dora,adalora,ia3,full")
    ap.add_argument("--ckpt", default="off,on")
    ap.add_argument("--json", help="append each case as a JSON line to this file")
    args = ap.parse_args()
    cache = Path(os.environ.get("PEFTLAB_BENCH_CACHE", Path.home() / ".cache" / "peftlab-bench"))
    rows = []
    print(
        "| model | method | checkpointing | predicted peak | measured peak (phase) | "
        "error |\n|---|---|---|---|---|---|",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in args.models.split(","):
            path = None if model == "embedded" else str(small190_dir(cache))
            for method in args.methods.split(","):
                for ck in args.ckpt.split(","):
                    cfg = case_config(path, method, ck == "on", str(work / "run"))
                    pred = predict(cfg)
                    meas = measure(cfg, work)
                    err = pred["peak_bytes"] / meas["peak"] - 1
                    row = {
                        "model": model,
                        "method": method,
                        "checkpointing": ck,
                        "predicted": pred,
                        "measured": meas,
                        "error": err,
                    }
                    rows.append(row)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(row) + "\n")
                    print(
                        f"| {model} | {method} | {ck} | {pred['peak_bytes'] / 2**30:.2f} "
                        f"GiB ({pred['peak_phase']}) | {meas['peak'] / 2**30:.2f} GiB "
                        f"({meas['phase']}) | {err:+.1%} |",
                        flush=True,
                    )
    worst = max(abs(r["error"]) for r in rows)
    print(f"\n{len(rows)} cases; largest error {worst:.1%}")


if __name__ == "__main__":
    main()
