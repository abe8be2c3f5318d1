"""The GPU benchmark's cases, shapes, data and arithmetic (``bench/gpu_bench.py`` runs them).

Two models, both with *random* weights built from a config (no download: the GPU machine
reaches nothing, and the embedded model's weights exceed what travels there):

- ``7b``: Mistral-7B-shaped (hidden 4096, 32 layers, 32 heads, 8 KV heads, ffn 14336,
  vocabulary 32,000), bf16, built on the GPU and saved once. Its tokenizer is the
  embedded SmolLM2 tokenizer cut to its first 32,000 ids (the byte-level BPE merges that
  make higher ids dropped), so every id fits the 32,000-row embedding.
- ``small``: the embedded SmolLM2-135M's own config and tokenizer (``.gpu/`` carries
  them), fp32 storage as peftlab loads it by default.

``--tiny`` shrinks both models, the batches and the data so every case runs on a CPU in
about a minute: the same code paths, none of the figures meaningful.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / ".gpu" / "smollm2-tokenizer"
"""Config and tokenizer of the embedded model, carried to the GPU machine (gpu.sh)."""
DATA_NAME = "alpaca_en_demo.json"
DATA_CANDIDATES = (
    # shared/data inside the checkout (it travels to the GPU machine) or beside it, or
    # above it (a worktree under /work/wt/), then the copy gpu.sh --prepare carries
    *(d / "shared" / "data" / DATA_NAME for d in (ROOT, *ROOT.parents)),
    ROOT / ".gpu" / DATA_NAME,
)
MISTRAL_7B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=32000,
    max_position_embeddings=32768,
    sliding_window=None,
    rope_theta=1e6,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)
TINY_7B = {**MISTRAL_7B, **dict(hidden_size=64, intermediate_size=224, num_hidden_layers=2)}
TINY_7B.update(num_attention_heads=4, num_key_value_heads=2)
TINY_SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
)
CUT_VOCAB = 32000
ADAPTER = dict(r=16, alpha=32, dropout=0.05)
"""LoRA r = 16, alpha 32, dropout 0.05 on every linear layer of the decoder, both sides."""
BF16_PEAK = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}
"""Dense bf16 tensor-core peak (FLOP/s) by GPU name, from NVIDIA's data sheets (SXM)."""


@dataclass(frozen=True)
class Case:
    """One benchmark case: what both sides train, with the same settings."""

    name: str
    model: str  # "7b" or "small"
    method: str  # peftlab's method name
    peer: dict  # how the peer builds it: {"use_dora": bool, "bnb": bool}
    batch: int
    max_length: int
    steps: int | None  # None: one epoch
    warmup: int  # steps not timed (step cases)
    lr: float
    records: int | None = None  # use only the first N records of the data file (tiny)
    same_batches: bool = True  # the peer trains peftlab's batches in peftlab's order
    eval_records: int = 8  # the evaluations before and after: one batch

    @property
    def epoch(self) -> bool:
        return self.steps is None


CASES = {  # in the order they run: DoRA's, new here, last, should the budget run out
    "lora7b": Case("lora7b", "7b", "lora", {}, 4, 1024, 11, 3, 1e-4),
    "qlora7b": Case("qlora7b", "7b", "qlora", {"bnb": True}, 4, 1024, 11, 3, 1e-4),
    "epoch": Case("epoch", "small", "lora", {}, 8, 512, None, 0, 3e-4, same_batches=False),
    "dora7b": Case("dora7b", "7b", "dora", {"use_dora": True}, 4, 1024, 11, 3, 1e-4),
}
TINY_STEP = dict(batch=2, max_length=128, steps=3, warmup=1, records=24, eval_records=4)
TINY = {
    "lora7b": TINY_STEP,
    "qlora7b": TINY_STEP,
    "dora7b": TINY_STEP,
    "epoch": dict(batch=8, max_length=128, records=40, eval_records=4),
}
LEVERS = {"compile": "compile", "padding-free": "padding_free", "liger": "kernels"}
"""Optional peftlab levers (benchmark name: TrainConfig field), run as extra cases only
where this peftlab has the field (they are being built in parallel)."""


def case(name: str, tiny: bool) -> Case:
    c = CASES[name]
    return replace(c, **TINY[name]) if tiny else c


def lever_value(field_name: str):
    """The value that switches a lever on: True for a flag, ``"liger"`` for a kernel
    choice; None when this peftlab has no such option."""
    import dataclasses

    from peftlab.config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if field_name not in fields:
        return None
    default = fields[field_name].default
    return True if isinstance(default, bool) or default is None else "liger"


def available_levers(on_cuda: bool) -> dict[str, object]:
    """{lever: value} of the levers this peftlab offers and this machine can run."""
    import importlib.util

    out = {}
    for lever, field_name in LEVERS.items():
        value = lever_value(field_name)
        if value is None:
            continue
        if lever == "liger" and not (on_cuda and importlib.util.find_spec("liger_kernel")):
            continue  # Liger's Triton kernels need a GPU and the library
        out[lever] = value
    return out


@dataclass
class Prepared:
    """What ``prepare`` made under the work directory."""

    models: dict[str, str] = field(default_factory=dict)
    data: str = ""
    data_source: str = ""
    data_note: str = ""
    tiny: bool = False
    peak_flops: float = float("nan")
    peak_source: str = ""

    def save(self, work: Path) -> None:
        (work / "prepared.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, work: Path) -> Prepared:
        return cls(**json.loads((work / "prepared.json").read_text()))


def find_data() -> tuple[Path | None, str]:
    """The Alpaca demo records (``GPU_BENCH_DATA`` or the usual places); else None and
    why the bundled instructions stand in."""
    env = os.environ.get("GPU_BENCH_DATA")
    for p in ([Path(env)] if env else []) + list(DATA_CANDIDATES):
        if p.is_file():
            return p, ""
    return None, (
        f"{DATA_NAME} not found (looked in shared/data in and above the checkout, .gpu/): "
        "the bundled instructions stand in, shorter records than the issue's set"
    )


def assets_dir() -> Path:
    """The embedded model's config and tokenizer: ``.gpu/`` on the GPU machine, the
    embedded model's own directory where it is installed."""
    if (ASSETS / "tokenizer.json").is_file():
        return ASSETS
    from peftlab.model.load import ModelNotFoundError, resolve_model_path

    try:
        return Path(resolve_model_path(None))
    except (ModelNotFoundError, OSError) as e:
        raise SystemExit(
            f"{ASSETS} is missing and the embedded model is not installed ({e}): run "
            "`bash bench/gpu.sh --prepare` where it is, and carry .gpu"
        ) from e


def cut_tokenizer(src: Path, dst: Path, vocab: int = CUT_VOCAB) -> None:
    """A byte-level BPE tokenizer.json keeping ids below ``vocab``: its merges create ids
    in order, so the first ``vocab - base`` merges make exactly the kept tokens."""
    tok = json.loads((src / "tokenizer.json").read_text())
    model = tok["model"]
    model["vocab"] = {s: i for s, i in model["vocab"].items() if i < vocab}
    kept = set(model["vocab"])
    merges = []
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in kept and b in kept and a + b in kept:
            merges.append(m)
    model["merges"] = merges
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < vocab]
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "tokenizer.json").write_text(json.dumps(tok))
    shutil.copy(src / "tokenizer_config.json", dst / "tokenizer_config.json")


def build_model(config, dtype, target: Path, tokenizer_dir: Path, device: str) -> None:
    """A random model of ``config`` saved (safetensors) with the tokenizer beside it.
    Built on ``device`` directly in ``dtype`` (a 7B model's init on the GPU takes
    seconds, on the CPU minutes)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(target)
    del model
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / f, target / f)


def prepare(work: Path, tiny: bool) -> Prepared:
    """Tokenizers, random models and the data file under ``work``."""
    import torch
    from transformers import AutoConfig, MistralConfig

    work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    src = assets_dir()
    cut_tokenizer(src, work / "tok32k")
    p = Prepared(tiny=tiny)
    p.peak_flops, p.peak_source = device_peak()  # once: a CPU's measured rate varies
    big = MistralConfig(**(TINY_7B if tiny else MISTRAL_7B))
    build_model(big, torch.bfloat16, work / "mistral7b", work / "tok32k", device)
    small = AutoConfig.from_pretrained(src)
    for k, v in (TINY_SMALL if tiny else {}).items():
        setattr(small, k, v)
    build_model(small, torch.float32, work / "smollm2", src, device)
    p.models = {"7b": str(work / "mistral7b"), "small": str(work / "smollm2")}
    data, note = find_data()
    if data is None:
        data = ROOT / "src" / "peftlab" / "data" / "bundled" / "train.jsonl"
        records = [json.loads(ln) for ln in data.read_text().splitlines() if ln.strip()]
    else:
        records = json.loads(data.read_text())
    p.data_source, p.data_note = str(data), note
    p.data = str(work / "data.json")
    (work / "data.json").write_text(json.dumps(records))
    for name in CASES:  # the tiny cases train on the first records only
        n = case(name, tiny).records
        if n:
            (work / f"data-{n}.json").write_text(json.dumps(records[:n]))
    p.save(work)
    return p


def data_file(p: Prepared, c: Case) -> str:
    return str(Path(p.data).with_name(f"data-{c.records}.json")) if c.records else p.data


# ---------------------------------------------------------------- arithmetic


def model_flops(config, lengths: list[int]) -> float:
    """Training FLOPs of rows of these real lengths, PaLM's count (Chowdhery et al. 2022,
    arXiv 2204.02311, app. B): 6·N per token, N the parameters of every matmul (the
    decoder's Linears and the output head; the embedding lookup is none), plus attention
    12·L·H·d_head·s per token of a row of length s (not halved for the causal mask).
    The same count for both sides, whatever each computes (peftlab's response-only head
    skips prompt positions; a frozen base needs no weight gradients)."""
    c = getattr(config, "text_config", None) or config
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    d, heads, kv = c.hidden_size, c.num_attention_heads, c.num_key_value_heads
    per_layer = d * heads * hd * 2 + 2 * d * kv * hd + 3 * d * c.intermediate_size
    n = c.num_hidden_layers * per_layer + c.vocab_size * d
    tokens = sum(lengths)
    attention = 12 * c.num_hidden_layers * heads * hd * sum(s * s for s in lengths)
    return 6.0 * n * tokens + attention


def device_peak() -> tuple[float, str]:
    """(bf16 peak FLOP/s, where it comes from): the data sheet's dense figure for a known
    GPU; on a CPU (``--tiny``) the matmul rate measured here (peftlab's planner probe)."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, peak in BF16_PEAK.items():  # "H100 PCIe" before "H100"
            if key in name:
                return peak, f"{name}: {peak / 1e12:.0f} TFLOP/s dense bf16 (data sheet)"
        return float("nan"), f"{name}: bf16 peak not known here"
    from peftlab.memory.estimate import matmul_rate

    rate = matmul_rate(torch.bfloat16)
    return rate, f"CPU: {rate / 1e12:.3f} TFLOP/s bf16 matmul, measured"
