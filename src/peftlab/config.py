"""Run configuration: one dataclass per concern, YAML files and dotted overrides.

A YAML file takes the same keys as the command line (``lr: 2e-4``, ``r: 16``), or the
nested form (``train: {lr: 2e-4}``, ``adapter: {r: 16}``). Unknown keys are errors; the
resolved configuration is saved beside every adapter and result.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .core.options import coerce, make_config, option


@dataclass
class ModelConfig:
    name: str | None = option(
        None, "Hub id or local directory; default: the embedded SmolLM2-135M-Instruct"
    )
    dtype: str = option(
        "float32",
        "Storage dtype of the frozen base weights: float32, "
        "bfloat16 or float16 (adapters always train in fp32)",
    )
    trust_remote_code: bool = option(False, "Allow the model's own Python code to run")


def _check_ranges(obj, ranges: dict[str, tuple[float | None, float | None, str]]) -> None:
    """Numeric options against their allowed ranges, before anything is loaded; the
    message names the option and the range."""
    for name, (lo, hi, text) in ranges.items():
        v = getattr(obj, name)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"option {name!r} must be {text}, got {v!r}")


MAX_LR = 10.0
"""No optimiser step of AdamW on these models is sane above this rate (typical: 1e-5 to
1e-2); larger values only wreck the model."""
DATA_RANGES = {
    "max_length": (2, 1 << 20, "at least 2 and at most 1048576 (tokens)"),
    "eval_fraction": (1e-9, 0.999999, "between 0 and 1 (exclusive)"),
    "max_eval_records": (1, 1 << 40, "at least 1"),
}
TRAIN_RANGES = {
    "max_steps": (1, 1 << 40, "at least 1 (or unset: train for --epochs)"),
    "epochs": (1e-9, 1e6, "greater than 0 and at most 1e6"),
    "batch_size": (1, 1 << 16, "at least 1 and at most 65536"),
    "grad_accum": (1, 1 << 16, "at least 1 and at most 65536"),
    "lr": (1e-12, MAX_LR, f"greater than 0 and at most {MAX_LR:g}"),
    "weight_decay": (0, None, "0 or more"),
    "warmup_ratio": (0, 1, "between 0 and 1"),
    "max_grad_norm": (0, None, "0 (off) or more"),
    "eval_every": (0, None, "0 (only before and after) or a number of steps"),
    "save_every": (0, None, "0 (only at the end) or a number of steps"),
    "keep_checkpoints": (0, None, "0 (keep every one) or more"),
    "eval_batch_size": (1, 1 << 16, "at least 1 and at most 65536"),
    "exact_match_limit": (0, None, "0 (off) or more"),
    "max_new_tokens": (1, 1 << 20, "at least 1 and at most 1048576"),
}


@dataclass
class DataConfig:
    dataset: str | None = option(
        None,
        ".json/.jsonl file or Hub dataset id of Alpaca "
        "records or conversations; default: the bundled "
        "instructions (bundled-chat: the bundled "
        "conversations)",
    )
    data_format: str = option(
        "auto",
        "Record format: alpaca, messages (OpenAI chat), "
        "sharegpt, or auto (detected from the records)",
    )
    prompt_format: str = option(
        "auto",
        "alpaca (the Alpaca prompt), chat (the model's "
        "chat template), or auto (chat for conversations, "
        "Alpaca for instructions)",
    )
    chat_template: str | None = option(
        None,
        "Chat template for a model without one (or to replace its own): chatml or a Jinja file",
    )
    train_on: str = option(
        "all-assistant", "Chat loss on: all-assistant turns, last-assistant turn, or all tokens"
    )
    max_length: int = option(
        512, "Longest tokenised record; longer ones are truncated (and counted)"
    )
    eval_fraction: float = option(
        0.1, "Share held out for evaluation when the dataset has no eval split (a fixed split)"
    )
    max_eval_records: int | None = option(None, "Evaluate on at most this many records")
    eval_all: bool = option(
        False,
        "Evaluate on every record of the dataset, not only its "
        "held-out split (a general set scored for forgetting)",
    )
    skip_bad_records: bool = option(False, "Skip malformed records instead of stopping")

    def __post_init__(self) -> None:
        _check_ranges(self, DATA_RANGES)
        for name, allowed in (
            ("data_format", ("auto", "alpaca", "messages", "sharegpt")),
            ("prompt_format", ("auto", "alpaca", "chat")),
            ("train_on", ("all-assistant", "last-assistant", "all")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"option {name!r} must be one of {', '.join(allowed)}, got "
                    f"{getattr(self, name)!r}"
                )


@dataclass
class TrainConfig:
    output: str = option("runs/peftlab", "Directory for the adapter, checkpoints and metrics")
    max_steps: int | None = option(None, "Optimiser steps; overrides epochs")
    epochs: float = option(1.0, "Passes over the training data")
    batch_size: int = option(8, "Records per micro-batch")
    grad_accum: int = option(1, "Micro-batches per optimiser step")
    lr: float = option(2e-4, "Peak learning rate (AdamW)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_ratio: float = option(0.05, "Share of steps with linear warm-up before the cosine decay")
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 disables)")
    eval_every: int = option(0, "Evaluate every N steps (0: only before and after)")
    save_every: int = option(50, "Checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = option(2, "How many recent checkpoints to keep")
    seed: int = option(42, "Seed for initialisation, data order and dropout")
    mixed_precision: str = option(
        "auto",
        "auto, no, bf16 or fp16 (fp16: GPU only); auto picks bf16 where the hardware runs it fast",
    )
    gradient_checkpointing: bool = option(
        False, "Recompute activations in backward (less memory, ~30% more compute)"
    )
    response_only_head: bool = option(
        True,
        "Apply the output head only where the next "
        "token carries loss (prompt positions skip "
        "the vocabulary projection)",
    )
    loss_chunk: int | None = option(
        None,
        "Positions per cross-entropy chunk, logits recomputed "
        "in backward (0: all logits at once, more memory; "
        "unset: 256 on CPU, on a GPU all at once unless "
        "predicted not to fit its free memory)",
    )
    compute_dtype_weights: bool = option(
        True,
        "Under mixed precision, store the frozen "
        "Linear weights that only matmuls read in "
        "the compute dtype while training (the bits "
        "autocast casts them to: same results, half "
        "their memory); the originals are set aside "
        "(a temporary file on CPU, host memory on "
        "GPU) and restored after training",
    )
    lean_layers: bool = option(
        True,
        "Adapter layers and SwiGLU MLPs keep less for "
        "backward: no autocast copies of frozen weights, "
        "dropout masks in the dropped input's sign bits, the "
        "update summed in place, SiLU recomputed (the same "
        "equations, equal up to rounding); off: computed as "
        "plain PyTorch modules (and peft) do",
    )
    token_budget: int | None = option(
        None,
        "Cut each micro-batch into pieces of at most this "
        "many tokens (rows x longest row, long rows "
        "together) and accumulate their gradients: the same "
        "update with less activation memory and padding "
        "(0: never cut; unset: 2048 on CPU, on a GPU never "
        "unless predicted not to fit its free memory)",
    )
    padding_free: bool = option(
        False,
        "Each micro-batch (or token-budget piece) as its records end to end in one row, "
        "positions restarting at each record and attention kept within it (flash-attn's "
        "varlen kernel on CUDA where installed, else SDPA per record): no compute on "
        "padding; the same batches, losses and gradients. Evaluation stays padded",
    )
    compile: bool = option(
        False,
        "Compile each decoder layer, adapters included, with torch.compile while "
        "training (regional; evaluation, generation, merging and the saved files stay "
        "as without it). Costs compile time at the start; pays where launches dominate "
        "(GPUs); see BENCHMARKS.md for the CPU",
    )
    kernels: str = option(
        "auto",
        "Fused kernels for Llama/Mistral/Qwen-family models: liger (Liger-Kernel's "
        "RMSNorm, RoPE, SwiGLU and fused linear cross-entropy; CUDA only, pip install "
        "'peftlab[gpu]'), none, or auto (liger on CUDA when installed, else none)",
    )
    group_by_length: bool = option(
        True, "Batch records of similar length (within shuffled chunks) so padding costs little"
    )
    loss_weighting: str = option(
        "auto",
        "token: every target token of an epoch weighs "
        "the same (a step's summed loss / the epoch's "
        "mean targets per step); step: each step's mean "
        "over its own targets, as Trainer does; auto: "
        "token with length-grouped batches, else step",
    )
    allocator: str = option(
        "auto",
        "CPU memory allocator setting: lean (freed buffers "
        "go straight back to the OS: peak tracks live tensors, "
        "steps slower), trim (free pages returned after every "
        "step), default, or auto (lean for memory-first "
        "methods, QLoRA, on glibc's malloc; else default). The peftlab command "
        "runs on mimalloc where installed (Linux), on glibc's "
        "malloc with PEFTLAB_MALLOC=system",
    )
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    max_memory: str | None = option(
        None,
        "Keep the run's peak memory under this size "
        "(e.g. 3GiB, 20GB; GB counts as GiB): token "
        "budget, gradient checkpointing, allocator and "
        "generation copies are chosen by `peftlab plan`'s "
        "prediction before training, or the run stops "
        "saying what would fit",
    )
    plan_memory: bool = option(
        False,
        "Save the planner's predicted peak memory beside "
        "the measured one in results.json (compare does)",
    )
    generation_cache: int | None = option(
        None,
        "Bytes of compute-dtype weight copies "
        "generation may keep (default: min(4 GiB, "
        "a quarter of the free memory); 0: none)",
    )
    eval_batch_size: int = option(16, "Records per evaluation batch")
    exact_match_limit: int = option(
        64, "Generate for at most this many exactly checkable eval records"
    )
    max_new_tokens: int = option(48, "Generation length for exact match")
    overwrite: bool = option(
        False,
        "Start a new run in an --output that holds an earlier "
        "run or other files (moved aside, deleted once the new "
        "run has a checkpoint)",
    )
    resume: bool = option(False, "Resume from the latest checkpoint in the output directory")
    progress: bool = option(True, "Show a progress bar")
    report_to: str = option(
        "none",
        "Experiment trackers, comma-separated: tensorboard, mlflow (none: only "
        "metrics.jsonl); each needs its extra, e.g. pip install 'peftlab[mlflow]'",
    )
    run_name: str | None = option(None, "The tracked run's name (default: the output's name)")
    experiment: str | None = option(
        None, "The trackers' experiment (default: the tracker's own, e.g. MLFLOW_EXPERIMENT_NAME)"
    )

    def __post_init__(self) -> None:
        _check_ranges(self, TRAIN_RANGES)
        for name in ("loss_chunk", "token_budget"):  # checked before any model is loaded
            if isinstance(getattr(self, name), int) and getattr(self, name) < 0:
                raise ValueError(
                    f"option {name!r} must be 0 (off) or a positive number "
                    f"of tokens, got {getattr(self, name)}"
                )
        if self.max_memory is not None:
            from .core.sizes import parse_size

            parse_size(self.max_memory)  # a bad size is an error before anything loads
        if self.generation_cache is not None and self.generation_cache < 0:
            raise ValueError(
                f"option 'generation_cache' must be 0 (no copies) or a number "
                f"of bytes, got {self.generation_cache}"
            )
        if self.kernels not in ("auto", "liger", "none"):
            raise ValueError(f"option 'kernels' must be auto, liger or none, got {self.kernels!r}")
        if self.loss_weighting not in ("auto", "token", "step"):
            raise ValueError(
                f"option 'loss_weighting' must be auto, token or step, got {self.loss_weighting!r}"
            )


def resolve_weighting(t: TrainConfig) -> str:
    """``loss_weighting`` auto: token for length-grouped batches, whose steps range from a
    few short responses to many long ones (weighing each step alike would over-weigh the
    short ones' tokens), else step."""
    if t.loss_weighting == "auto":
        return "token" if t.group_by_length else "step"
    return t.loss_weighting


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@dataclass
class RunConfig:
    method: str = option("lora", "Fine-tuning method")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adapter: dict[str, Any] = field(default_factory=dict)
    """Method options (checked against the method's own config dataclass)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Flat keys (CLI option names, also accepted at the top level of YAML) -> dotted paths.
FLAT_KEYS: dict[str, str] = {"method": "method", "model": "model.name"}
FLAT_KEYS.update({f.name: f"data.{f.name}" for f in dataclasses.fields(DataConfig)})
FLAT_KEYS.update({f.name: f"train.{f.name}" for f in dataclasses.fields(TrainConfig)})
FLAT_KEYS.update(
    {f.name: f"model.{f.name}" for f in dataclasses.fields(ModelConfig) if f.name != "name"}
)


def set_dotted(cfg: RunConfig, path: str, value: Any) -> None:
    """Set ``section.key`` (or a method option ``adapter.key``) on ``cfg``."""
    section, _, key = path.partition(".")
    if not key:
        if section not in FLAT_KEYS:
            raise ValueError(f"unknown config key {section!r}")
        if FLAT_KEYS[section] != section:
            return set_dotted(cfg, FLAT_KEYS[section], value)
        return setattr(cfg, section, coerce(value, "str", section))
    if section == "adapter":
        cfg.adapter[key] = value
        return
    if section not in SECTIONS:
        raise ValueError(
            f"unknown config section {section!r} in {path!r}; sections: "
            f"{', '.join([*SECTIONS, 'adapter'])}"
        )
    obj = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if key not in fields:
        raise ValueError(f"unknown config key {path!r}")
    old = getattr(obj, key)
    setattr(obj, key, coerce(value, fields[key].type, path))
    if hasattr(obj, "__post_init__"):  # the section's own range checks, before any load
        try:
            obj.__post_init__()
        except ValueError:
            setattr(obj, key, old)
            raise


def apply_mapping(cfg: RunConfig, data: dict[str, Any], where: str, method_keys: set[str]) -> None:
    """Apply a YAML mapping (flat or nested). ``method_keys``: known method options."""
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key in (*SECTIONS, "adapter") and (isinstance(value, dict) or key not in FLAT_KEYS):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key!r} must be a mapping")
            for sub, v in value.items():
                _checked_set(cfg, f"{key}.{str(sub).replace('-', '_')}", v, where)
        elif key in FLAT_KEYS:
            _checked_set(cfg, key, value, where)
        elif key in method_keys:
            cfg.adapter[key] = value
        else:
            raise ValueError(
                f"{where}: unknown key {key!r}; known keys: "
                f"{', '.join(sorted({*FLAT_KEYS, *method_keys}))}"
            )


def _checked_set(cfg: RunConfig, path: str, value: Any, where: str) -> None:
    try:
        set_dotted(cfg, path, value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path}: not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of keys to values")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=1e-4`` -> (``train.lr``, 1e-4); the value is read as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    key, _, raw = text.partition("=")
    return key.strip().replace("-", "_"), yaml.safe_load(raw)


# Building a run configuration (the API, the CLI and compare share these)


def method_option_names() -> set[str]:
    import dataclasses

    from .methods import METHODS

    return {f.name for cls in METHODS.values() for f in dataclasses.fields(cls.config_cls)}


def build_config(
    config: str | Path | dict | RunConfig | None = None, **overrides: Any
) -> RunConfig:
    """A RunConfig from a YAML file, a mapping or a RunConfig, then keyword overrides
    (flat keys as on the CLI: ``lr=1e-4``, ``r=16``, ``model=...``)."""
    if isinstance(config, RunConfig):
        cfg = config
    else:
        cfg = RunConfig()
        if config is not None:
            data = config if isinstance(config, dict) else load_yaml(config)
            apply_mapping(
                cfg,
                data,
                str(config if not isinstance(config, dict) else "config"),
                method_option_names(),
            )
    if overrides:
        apply_mapping(cfg, overrides, "arguments", method_option_names())
    check_method_options(cfg, where=str(config) if isinstance(config, (str, Path)) else "")
    return cfg


def check_method_options(cfg: RunConfig, where: str = "") -> None:
    """Fail early (before any model loads) on a method option the method does not have."""
    from .methods import METHODS

    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; available: {', '.join(sorted(METHODS))}")
    make_config(
        METHODS[cfg.method].config_cls,
        cfg.adapter,
        where=f"method {cfg.method!r}" + (f" in {where}" if where else ""),
    )
