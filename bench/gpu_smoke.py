"""Every method through the real training loop on a GPU (bf16 and fp16), as a check.

The embedded model's weights cannot travel to the GPU machine (its files exceed the
transfer limit), so this builds a SmolLM2-135M-shaped model with random weights from the
embedded model's config and tokenizer (`--assets`, a folder with config.json and the
tokenizer files), then trains each method for a few steps on the bundled data and
records loss, tokens/s and peak GPU memory. Perplexity of a random model means nothing;
this checks that the GPU code paths (device placement, autocast, fp16 loss scaling,
checkpointing) work and how fast they are.

    python bench/gpu_smoke.py --assets .gpu/smollm2-tokenizer --out results.json
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path


def build_random_model(assets: Path, target: Path) -> str:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(assets)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(assets).save_pretrained(target)
    return str(target)


def main() -> None:
    import peftlab
    from peftlab.methods import METHODS

    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--work", default="/tmp/peftlab-gpu")
    a = ap.parse_args()
    model_dir = build_random_model(Path(a.assets), Path(a.work) / "smollm2-random")
    runs = [(m, "bf16", False) for m in sorted(METHODS)]
    runs += [("lora", "fp16", False), ("lora", "bf16", True)]
    results = []
    for method, precision, ckpt in runs:
        t0 = time.perf_counter()
        row = {"method": method, "precision": precision, "gradient_checkpointing": ckpt}
        try:
            res = peftlab.train(
                method=method,
                model=model_dir,
                mixed_precision=precision,
                gradient_checkpointing=ckpt,
                max_steps=a.steps,
                batch_size=16,
                lr=1e-3,
                save_every=20,
                eval_every=20,
                exact_match_limit=16,
                max_new_tokens=8,
                progress=False,
                output=f"{a.work}/{method}-{precision}-{int(ckpt)}",
            )
            losses = [
                json.loads(x).get("loss")
                for x in open(f"{a.work}/{method}-{precision}-{int(ckpt)}/metrics.jsonl")
            ]
            losses = [x for x in losses if x is not None]
            row.update(
                ok=True,
                first_loss=losses[0],
                last_loss=losses[-1],
                tokens_per_s=res["tokens_per_s"],
                peak_gpu_gib=res["peak_memory_bytes"] / 2**30,
                trainable=res["params"]["trainable"],
                eval_loss_before=res["before"]["eval_loss"],
                eval_loss_after=res["after"]["eval_loss"],
            )
        except Exception as e:  # record and go on: one failing method must not hide others
            row.update(
                ok=False, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-2000:]
            )
        row["wall_s"] = time.perf_counter() - t0
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
    Path(a.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
