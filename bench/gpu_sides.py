"""The two sides of a GPU benchmark case, each run in its own process by ``gpu_bench.py``.

- **peftlab**: ``peftlab.train`` as a user calls it, with its device-aware defaults (token
  budget and loss chunk resolved for the device, mixed precision ``auto``), the planner's
  prediction saved beside the measured peak (``plan_memory``). The benchmark only reads
  the clock: it wraps the loop's ``fit`` (start and end, with a CUDA sync) and
  ``MetricsLog.write`` (each step's record; on a GPU with a CUDA sync in the step cases).
- **peer**: transformers ``Trainer`` + ``peft`` (+ bitsandbytes for QLoRA) with their
  documented defaults and the same settings; a ``TrainerCallback`` reads the clock at the
  same moments (train begin and end, each optimiser step's end). In the step cases it
  trains peftlab's very batches in peftlab's order (same token ids, same label masks,
  same padding to the longest row); in the epoch case its own random batches.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

from gpu_cases import ADAPTER, LEVERS, Case, Prepared, data_file, model_flops

SEED = 42


class Clock:
    """Wall-clock marks of a training loop: begin, each step's end, end. ``sync``: wait
    for the GPU at each step's end (the step cases: a step is then all its own work)."""

    def __init__(self, sync: bool):
        import torch

        self.cuda = torch.cuda.is_available()
        self.sync = sync and self.cuda
        self.marks: list[tuple[int, float]] = []
        self.t0 = self.t1 = None

    def _now(self, sync: bool) -> float:
        if sync and self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def begin(self) -> None:
        self.t0 = self._now(True)

    def step(self, step: int) -> None:
        self.marks.append((step, self._now(self.sync)))

    def end(self) -> None:
        self.t1 = self._now(True)

    def per_step(self) -> list[tuple[int, float]]:
        """(step, seconds) for every step (a mark covering several steps is spread
        evenly over them)."""
        out, prev_step, prev_t = [], 0, self.t0
        for step, t in self.marks:
            n = step - prev_step
            out += [(prev_step + i + 1, (t - prev_t) / n) for i in range(n)] if n > 0 else []
            prev_step, prev_t = step, t
        return out


def batches_of(c: Case, p: Prepared):
    """(train examples, epoch-0 batches of indices, tokenizer) exactly as peftlab makes
    them: its data split, tokenisation and length-grouped order."""
    from peftlab.data.alpaca import encode
    from peftlab.data.batching import epoch_batches
    from peftlab.data.sources import load_splits
    from peftlab.model.load import load_tokenizer

    tok = load_tokenizer(p.models[c.model])
    splits = load_splits(data_file(p, c), 0.1)
    ex = encode(tok, splits.train, c.max_length).examples
    order = epoch_batches([len(e.input_ids) for e in ex], c.batch, SEED, 0, group=True)
    return ex, order, tok


def figures(c: Case, clock: Clock, step_lengths, all_lengths, config, peak: float) -> dict:
    """Step time (median after warm-up, min-max), epoch time, tokens/s and MFU."""
    per = clock.per_step()
    timed = [(s, dt) for s, dt in per if s > c.warmup] or per
    secs = [dt for _, dt in timed]
    out = {
        "steps": len(per),
        "timed_steps": len(timed),
        "step_s": statistics.median(secs) if secs else None,
        "step_s_min": min(secs) if secs else None,
        "step_s_max": max(secs) if secs else None,
        "loop_s": clock.t1 - clock.t0,
    }
    if c.epoch:  # the whole loop: every record once
        lengths, seconds = all_lengths, out["loop_s"]
    else:  # the timed steps' batches
        lengths = [n for s, _ in timed for n in step_lengths[s - 1]]
        seconds = sum(secs)
    out["tokens"] = sum(lengths)
    out["tokens_per_s"] = sum(lengths) / seconds
    out["model_flops"] = model_flops(config, lengths)
    out["mfu"] = out["model_flops"] / seconds / peak
    return out


@contextlib.contextmanager
def clocked_loop(clock: Clock):
    """peftlab's loop with the clock read at its start and end (``fit``) and at each
    training step's record (``MetricsLog.write``); nothing else of the loop changes."""
    from peftlab.training import loop, metrics

    write, fit = metrics.MetricsLog.write, loop.fit

    def timed_write(self, **record):
        if "lr" in record and "loss" in record:  # a training step's record
            clock.step(int(record["step"]))
        return write(self, **record)

    def timed_fit(run):
        clock.begin()
        res = fit(run)
        clock.end()
        return res

    metrics.MetricsLog.write, loop.fit = timed_write, timed_fit
    try:
        yield
    finally:
        metrics.MetricsLog.write, loop.fit = write, fit


def peftlab_options(c: Case, p: Prepared, out: Path, lever: str | None, value) -> dict:
    """``peftlab.train``'s arguments: the case's settings; everything else its default."""
    opts = dict(
        method=c.method,
        model=p.models[c.model],
        dtype="bfloat16" if c.model == "7b" else "float32",
        dataset=data_file(p, c),
        output=str(out),
        overwrite=True,
        batch_size=c.batch,
        max_length=c.max_length,
        lr=c.lr,
        warmup_ratio=0.05,
        seed=SEED,
        target_modules="all-linear",
        eval_every=0,
        save_every=0,
        exact_match_limit=0,
        max_eval_records=c.eval_records,
        progress=False,
        plan_memory=True,
        **ADAPTER,
        **({"epochs": 1} if c.epoch else {"max_steps": c.steps}),
    )
    if lever:
        opts[LEVERS[lever]] = value
    return opts


def run_peftlab(c: Case, p: Prepared, work: Path, lever: str | None, value, peak: float) -> dict:
    import yaml
    from transformers import AutoConfig

    import peftlab
    from peftlab.training.metrics import MetricsLog

    clock, run_dir = Clock(sync=not c.epoch), work / "run"
    with clocked_loop(clock):
        res = peftlab.train(**peftlab_options(c, p, run_dir, lever, value))
    ex, order, _ = batches_of(c, p)
    step_lengths = [[len(ex[i].input_ids) for i in b] for b in order]
    config = AutoConfig.from_pretrained(p.models[c.model])
    out = figures(c, clock, step_lengths, [len(e.input_ids) for e in ex], config, peak)
    logged = MetricsLog(run_dir / "metrics.jsonl", 10**9).records()
    logged = [r["tokens"] for r in logged if "lr" in r and "tokens" in r]
    if not c.epoch:  # the peer trains these batches: check they are peftlab's
        out["batches_match"] = logged == [sum(x) for x in step_lengths[: len(logged)]]
    train = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    predicted = res.get("predicted_memory") or {}
    out.update(
        peak_bytes=res["peak_memory_bytes"],
        peak_train_bytes=(res.get("memory_phases") or {}).get("train"),
        predicted_bytes=predicted.get("peak_bytes"),
        predicted_phase=predicted.get("peak_phase"),
        predicted_train_bytes=(predicted.get("phases") or {}).get("train"),
        predicted_error=predicted.get("error"),
        precision=res.get("precision"),
        settings={
            k: train[k]
            for k in ("token_budget", "loss_chunk", "mixed_precision", *LEVERS.values())
            if k in train
        },
        trainable=res["params"]["trainable"],
        final_loss=res.get("final_loss"),
    )
    return out


def peer_model(c: Case, p: Prepared, cuda: bool):
    """The peer's model: ``from_pretrained`` (4-bit through bitsandbytes for QLoRA) and
    ``get_peft_model`` with the same adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if c.model == "7b" else torch.float32
    kwargs: dict = {"dtype": dtype, "device_map": {"": 0 if cuda else "cpu"}}
    if c.peer.get("bnb"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )  # no prepare_model_for_kbit_training: it turns gradient checkpointing on
    model = AutoModelForCausalLM.from_pretrained(p.models[c.model], **kwargs)
    adapter = LoraConfig(
        r=ADAPTER["r"],
        lora_alpha=ADAPTER["alpha"],
        lora_dropout=ADAPTER["dropout"],
        target_modules="all-linear",
        use_dora=bool(c.peer.get("use_dora")),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, adapter)


def peer_args(c: Case, work: Path, steps: int, lever: str | None, device):
    """``TrainingArguments``: the case's settings, the rest Trainer's defaults."""
    from transformers import TrainingArguments

    from peftlab.core.runtime import pick_precision

    return TrainingArguments(
        output_dir=str(work / "peer"),
        per_device_train_batch_size=c.batch,
        learning_rate=c.lr,
        num_train_epochs=1,
        max_steps=c.steps or -1,
        lr_scheduler_type="cosine",
        warmup_steps=int(round(steps * 0.05)),
        max_grad_norm=1.0,
        weight_decay=0.0,
        seed=SEED,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_steps=max(1, steps // 10),
        bf16=pick_precision("auto", device) == "bf16",  # as peftlab's auto picks
        use_cpu=device.type != "cuda",
        gradient_checkpointing=False,
        remove_unused_columns=False,
        use_liger_kernel=lever == "liger",
    )


def clock_callback(clock: Clock):
    """A ``TrainerCallback`` reading ``clock`` where peftlab's is read."""
    from transformers import TrainerCallback

    class Timed(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            clock.begin()

        def on_step_end(self, args, state, control, **kw):  # after the optimiser step
            clock.step(state.global_step)

        def on_train_end(self, args, state, control, **kw):
            clock.end()

    return Timed()


def run_peer(c: Case, p: Prepared, work: Path, lever: str | None, peak: float) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer

    from peftlab.core.runtime import peak_memory_bytes

    class InOrder(Trainer):
        """peftlab's batches, in its order (the step cases)."""

        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ex, order, tok = batches_of(c, p)
    batches = order[: c.steps] if not c.epoch else None
    rows = [ex[i] for b in batches for i in b] if batches else ex
    data = [
        {
            "input_ids": e.input_ids,
            "attention_mask": [1] * len(e.input_ids),
            "labels": [-100] * e.n_prompt + e.input_ids[e.n_prompt :],
        }
        for e in rows
    ]
    model = peer_model(c, p, device.type == "cuda")
    args = peer_args(c, work, c.steps or -(-len(rows) // c.batch), lever, device)
    clock = Clock(sync=not c.epoch)
    trainer = (InOrder if batches else Trainer)(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, padding=True),
        callbacks=[clock_callback(clock)],
    )
    out = trainer.train()
    peak_bytes = peak_memory_bytes(device)  # this process's, from its start
    step_lengths = [[len(ex[i].input_ids) for i in b] for b in batches] if batches else []
    res = figures(c, clock, step_lengths, [len(e.input_ids) for e in ex], model.config, peak)
    res.update(
        peak_bytes=peak_bytes,
        precision="bf16" if args.bf16 else "fp32",
        trainable=sum(q.numel() for q in model.parameters() if q.requires_grad),
        mean_train_loss=out.training_loss,
        quantized=bool(c.peer.get("bnb")),
    )
    return res
