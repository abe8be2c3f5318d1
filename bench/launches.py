"""The launch proxy on the CPU: aten ops and device->host syncs per optimiser step.

On a GPU a small model's training step is launch-bound: every aten op the step
dispatches is at least one kernel launch, and every read of a device value stalls the
host until the device catches up. Both can be counted on the CPU, exactly (the counts do
not depend on the machine's load), with a ``TorchDispatchMode`` that sees every aten op
below autograd and autocast.

The case: the embedded SmolLM2-135M-Instruct, LoRA r 16, alpha 32, dropout 0.05 on every
linear layer of the decoder (``bench/epoch.py``'s settings), bf16 autocast, AdamW, clipping
at 1.0, one micro-batch of 8 records of Alpaca text (``../shared/data/alpaca_en_demo.json``,
responses joined so that most rows fill the 512-token limit and one is shorter: 8 x 512
with padding), the same batch every step. Step 1 warms up (optimiser state); step 2 is
counted (steady state).

- **peftlab**: the real ``peftlab.train`` loop; a row per setting. ``fwd+bwd`` is the
  loop's ``_step`` (forward, loss, backward over the step's pieces); ``step`` is one whole
  optimiser step (``_step``, clipping, the step's read of loss and gradient norm, AdamW,
  the schedule, zeroing the gradients, the metrics record).
- **Trainer + peft**: ``Trainer.training_step`` (forward, loss, backward) of a peft LoRA
  model with ``bf16=True``, given the same token ids and labels (what its collator would
  give) and ``num_items_in_batch`` as its loop computes it; ``step`` adds what
  ``_inner_training_loop`` does around it each step (the non-finite check of the step's
  loss, ``accelerator.clip_grad_norm_``, the optimiser and schedule steps, ``zero_grad``).

What counts as a **sync** (an op that on CUDA makes the host wait for the device): the
aten ops ``_local_scalar_dense`` (``.item()``, ``float()``, ``bool()`` of a tensor:
``is_nonzero`` reaches the dispatcher as this op), ``nonzero``, ``masked_select``,
``masked_scatter``, ``equal``, ``unique`` family, ``repeat_interleave`` without
``output_size``, ``index``/``index_put`` with a boolean index; and the Python calls
``Tensor.tolist``, ``Tensor.numpy``, ``Tensor.cpu`` (no aten op on a CPU tensor, so they are
caught at the Python level). ``Tensor.to("cpu")`` is not counted: on the CPU it is the
same call as moving a batch to the training device.

What is **host work** and counted apart (on a GPU it runs on host tensors: no launch, no
sync): ops inside peftlab's collation and ``loss.Targets.of`` (the labels, before the
batch moves) and Trainer's ``get_batch_samples``, and ops on AdamW's ``step`` counters
(CPU tensors unless ``capturable`` or ``fused``) and on what is computed from them alone.

Caveat: on the CPU, ``torch.optim.AdamW`` and ``clip_grad_norm_`` take their per-tensor
paths (foreach kernels are for GPUs), so the optimiser part of ``step`` counts more ops
than a GPU would launch; ``fwd+bwd`` is the same code on both.

    python bench/launches.py            # ~5-10 min on 2 cores, prints the markdown table
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import weakref
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from epoch import DATA, SETTINGS  # noqa: E402  (the epoch benchmark's LoRA settings)

aten = torch.ops.aten
SYNC_OPS = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.masked_scatter.default,
    aten.equal.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
}
PYTHON_SYNCS = ("tolist", "numpy", "cpu")
LONG, SHORT = 1.2, (0.7, 0.85)  # token goals, x max_length: long rows are cut, two shorter


def _is_sync(func, args, kwargs) -> bool:
    if func in SYNC_OPS:
        return True
    if func is aten.repeat_interleave.Tensor:
        return kwargs.get("output_size") is None
    if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
        idx = args[1] if len(args) > 1 else kwargs.get("indices", [])
        return any(t is not None and t.dtype == torch.bool for t in idx)
    return False


class Counter(TorchDispatchMode):
    """Counts aten ops and syncs into the current ``phase``; ops inside :meth:`host` (or
    whose tensors are all host tensors) go to ``host`` instead."""

    def __init__(self):
        super().__init__()
        self.counts: dict[str, list[int]] = {}
        self.phase = "setup"
        self.host_depth = 0
        self.host_ids: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.sync_sites: dict[str, dict[str, int]] = {}
        self.ops: dict[str, dict[str, int]] = {}

    def add(self, ops: int, syncs: int, what: str = "") -> None:
        c = self.counts.setdefault(self.phase, [0, 0])
        c[0] += ops
        c[1] += syncs
        if syncs:
            sites = self.sync_sites.setdefault(self.phase, {})
            sites[what] = sites.get(what, 0) + syncs

    def is_host(self, t) -> bool:
        return isinstance(t, torch.Tensor) and self.host_ids.get(id(t)) is t

    def mark_host(self, tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self.host_ids[id(t)] = t

    @contextlib.contextmanager
    def host(self):
        self.host_depth += 1
        try:
            yield
        finally:
            self.host_depth -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat = torch.utils._pytree.tree_leaves((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        if self.host_depth:  # its results may move to the device: not marked
            self.counts.setdefault("host", [0, 0])[0] += 1
            return out
        if tensors and all(self.is_host(t) for t in tensors):  # never leaves the host
            self.mark_host(torch.utils._pytree.tree_leaves(out))
            self.counts.setdefault("host", [0, 0])[0] += 1
            return out
        self.add(1, int(_is_sync(func, args, kwargs)), str(func))
        hist = self.ops.setdefault(self.phase, {})
        hist[str(func)] = hist.get(str(func), 0) + 1
        return out


@contextlib.contextmanager
def counting():
    """A :class:`Counter` active, the Python-level reads patched to count, optimiser
    step counters marked as host tensors."""
    counter = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in PYTHON_SYNCS}

    def patched(name):
        def read(t, *a, **k):
            if not counter.host_depth and not counter.is_host(t):
                counter.add(0, 1, f"Tensor.{name}")
            return saved[name](t, *a, **k)

        return read

    def host_steps(opt, args, kwargs):
        if any(opt.defaults.get(k) for k in ("capturable", "fused")):
            return
        counter.mark_host(s.get("step") for s in opt.state.values())

    hook = register_optimizer_step_pre_hook(host_steps)
    for name in PYTHON_SYNCS:
        setattr(torch.Tensor, name, patched(name))
    try:
        with counter:
            yield counter
    finally:
        for name, f in saved.items():
            setattr(torch.Tensor, name, f)
        hook.remove()


def records(tok, source: Path, length: int, n: int = 9) -> list[dict]:
    """``n`` Alpaca records: an instruction of the demo set with several demo responses
    joined as its response, until the record reaches its token goal."""
    from peftlab.data.alpaca import prompt_ids

    src = json.loads(source.read_text())
    out, k = [], 0
    for i in range(n):
        rec = dict(src[i], output="")
        goal = length * (SHORT[i - n + len(SHORT)] if i >= n - len(SHORT) else LONG)
        while len(prompt_ids(tok, rec)) + len(tok(rec["output"])["input_ids"]) < goal:
            rec["output"] = (rec["output"] + "\n\n" + src[k % len(src)]["output"]).strip()
            k += 1
        out.append(rec)
    return out


def write_data(work: Path, source: Path) -> tuple[Path, list, int]:
    """The records as a JSON file and the 8 training examples peftlab will take."""
    from transformers import AutoTokenizer

    from peftlab.data.alpaca import encode
    from peftlab.data.sources import split_fixed
    from peftlab.model.load import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(None))
    recs = records(tok, source, SETTINGS["max_length"])
    path = work / "records.json"
    path.write_text(json.dumps(recs))
    train, _ = split_fixed(recs, EVAL_FRACTION)
    return path, encode(tok, train, SETTINGS["max_length"]).examples, tok.pad_token_id


EVAL_FRACTION = 0.05  # one record of nine held out (peftlab's fixed split)
STEPS = 2


def run_peftlab(options: dict, data: Path, work: Path) -> dict:
    """Counts of the real loop's step 2."""
    import peftlab
    from peftlab.training import loop
    from peftlab.training.loss import Targets

    s = SETTINGS
    step_fn, collate, targets_of = loop._step, loop.collate, Targets.__dict__["of"]
    periodic = loop._periodic
    with counting() as c:
        n = [0]

        def step(*a, **k):
            n[0] += 1
            c.phase = f"fwd+bwd {n[0]}"
            try:
                return step_fn(*a, **k)
            finally:
                c.phase = f"rest {n[0]}"

        def on_host(f):
            def wrapped(*a, **k):
                with c.host():
                    return f(*a, **k)

            return wrapped

        def step_end(*a, **k):
            c.phase = "after"
            return periodic(*a, **k)

        loop._step, loop.collate, loop._periodic = step, on_host(collate), step_end
        Targets.of = classmethod(on_host(targets_of.__func__))
        try:
            peftlab.train(
                method="lora",
                dataset=str(data),
                output=str(work / "run"),
                max_steps=STEPS,
                batch_size=s["batch_size"],
                lr=s["lr"],
                r=s["r"],
                alpha=s["alpha"],
                dropout=s["dropout"],
                target_modules="all-linear",
                max_length=s["max_length"],
                max_grad_norm=s["max_grad_norm"],
                seed=s["seed"],
                mixed_precision="bf16",
                eval_fraction=EVAL_FRACTION,
                eval_every=0,
                save_every=0,
                exact_match_limit=0,
                progress=False,
                overwrite=True,
                **options,
            )
        finally:
            loop._step, loop.collate, Targets.of = step_fn, collate, targets_of
            loop._periodic = periodic
    return _row(c)


def _row(c: Counter) -> dict:
    fb, rest = c.counts["fwd+bwd 2"], c.counts["rest 2"]
    return {
        "fwd_bwd_ops": fb[0],
        "fwd_bwd_syncs": fb[1],
        "step_ops": fb[0] + rest[0],
        "step_syncs": fb[1] + rest[1],
        "sync_sites": {p: c.sync_sites.get(p, {}) for p in ("fwd+bwd 2", "rest 2")},
        "ops": {p: c.ops.get(p, {}) for p in ("fwd+bwd 2", "rest 2")},
    }


def run_trainer(examples: list, pad_id: int, work: Path) -> dict:
    """Trainer.training_step of a peft LoRA model on the same batch, and its loop's step."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from peftlab.data.batching import collate
    from peftlab.model.load import resolve_model_path

    s = SETTINGS
    torch.manual_seed(s["seed"])
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(None), dtype=torch.float32)
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
    args = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=s["batch_size"],
        learning_rate=s["lr"],
        max_grad_norm=s["max_grad_norm"],
        bf16=True,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=STEPS)
    model.train()
    batch = collate(examples, pad_id)  # DataCollatorForSeq2Seq's padding, same ids
    tr_loss = torch.zeros(())
    with counting() as c:
        for i in range(1, STEPS + 1):
            with c.host():  # get_batch_samples: on the host labels, before they move
                _, items = trainer.get_batch_samples(iter([dict(batch)]), 1, args.device)
            c.phase = f"fwd+bwd {i}"
            loss = trainer.training_step(model, dict(batch), items)
            c.phase = f"rest {i}"
            # what _inner_training_loop does around each training_step (no logging step)
            if args.logging_nan_inf_filter and (torch.isnan(loss) or torch.isinf(loss)):
                tr_loss += tr_loss / i
            else:
                tr_loss += loss
            norm = trainer._get_grad_norm(model, grad_norm=trainer._clip_grad_norm(model))
            trainer.optimizer.step()
            trainer._get_learning_rate()
            trainer.lr_scheduler.step()
            model.zero_grad()
            c.phase = "after"
            del norm
    return _row(c)


ROWS = [
    ("peftlab, defaults (CPU: token_budget 2048 = 2 pieces, loss_chunk 256)", {}),
    ("peftlab, token_budget=0, loss_chunk=0", {"token_budget": 0, "loss_chunk": 0}),
    ("  + loss_chunk=256", {"token_budget": 0, "loss_chunk": 256}),
    ("  + lean_layers=false", {"token_budget": 0, "loss_chunk": 0, "lean_layers": False}),
    (
        "  + compute_dtype_weights=false",
        {"token_budget": 0, "loss_chunk": 0, "compute_dtype_weights": False},
    ),
    (
        "  + response_only_head=false",
        {"token_budget": 0, "loss_chunk": 0, "response_only_head": False},
    ),
    (
        "  + gradient_checkpointing=true",
        {"token_budget": 0, "loss_chunk": 0, "gradient_checkpointing": True},
    ),
]


def table(results: list[tuple[str, dict]]) -> str:
    out = [
        "| | aten ops, fwd+bwd | syncs, fwd+bwd | aten ops, whole step | syncs, whole step |",
        "|---|---|---|---|---|",
    ]
    for label, r in results:
        out.append(
            f"| {label.strip()} | {r['fwd_bwd_ops']:,} | {r['fwd_bwd_syncs']} | "
            f"{r['step_ops']:,} | {r['step_syncs']} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", help="comma-separated row numbers (0: Trainer + peft)")
    ap.add_argument("--json", help="also write the counts and sync sites to this file")
    ap.add_argument("--data", type=Path, default=DATA, help=f"the Alpaca records ({DATA})")
    ap.add_argument(
        "--max-length", type=int, default=SETTINGS["max_length"], help="tokens per row (512)"
    )
    a = ap.parse_args()
    SETTINGS["max_length"] = a.max_length
    if not a.data.is_file():
        sys.exit(f"{a.data} is missing; this benchmark needs the alpaca_en_demo records")
    torch.manual_seed(0)
    wanted = {int(x) for x in a.rows.split(",")} if a.rows else None
    results = []
    with tempfile.TemporaryDirectory(prefix="launches-") as d:
        work = Path(d)
        data, examples, pad_id = write_data(work, a.data)
        print(
            f"batch: {len(examples)} rows of {[len(e.input_ids) for e in examples]} tokens",
            file=sys.stderr,
        )
        if wanted is None or 0 in wanted:
            results.append(
                ("Trainer + peft (`training_step`)", run_trainer(examples, pad_id, work))
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        for i, (label, options) in enumerate(ROWS, 1):
            if wanted is None or i in wanted:
                results.append((label, run_peftlab(options, data, work)))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
