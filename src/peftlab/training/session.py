"""Everything a command sets up before it trains, evaluates or generates.

``open_session`` loads the base model and tokenizer, injects a new adapter or loads a
saved one, reads and tokenises the data, and resolves device and precision: one place,
so train, eval, merge and generate see the same model the same way.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig
from ..core.runtime import parse_dtype, pick_device, pick_precision
from ..data.batching import Encoded
from ..data.prompting import PromptFormat, make_prompt_format, template_spec_to_save
from ..data.sources import Splits, load_splits
from ..formats.peft import load_adapter_into, read_adapter_config
from ..formats.saved import is_model_dir, run_reads
from ..host import reclaim
from ..methods import METHODS, Method, get_method, method_for_peft_config
from ..model.inject import AdapterInfo, count_parameters, inject
from ..model.load import load_base, resolve_model_path
from ..model.precheck import check_before_load
from .defaults import resolve_defaults
from .distributed import is_main_process
from .loss import DEFAULT_LOSS, LossOptions

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Session:
    model: nn.Module
    tokenizer: Any
    model_id: str
    device: torch.device
    precision: str
    adapter: AdapterInfo | None = None
    splits: Splits | None = None
    train_data: Encoded | None = None
    eval_data: Encoded | None = None
    params: dict = field(default_factory=dict)
    loss_options: LossOptions = DEFAULT_LOSS
    prompt: PromptFormat | None = None
    """How records and user messages become model input (Alpaca prompt or chat template)."""

    def data_info(self) -> dict:
        """What the data were and how they were rendered (for results.json, reports)."""
        info = {"source": self.splits.source, "format": self.splits.format} if self.splits else {}
        return {**info, **(self.prompt.describe() if self.prompt else {})}

    def autocast(self) -> Callable[[], contextlib.AbstractContextManager]:
        """A factory of autocast contexts for this session's precision (or no-ops)."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext
        return lambda: torch.autocast(self.device.type, dtype=dtype)


def log(msg: str) -> None:
    """Print to stderr; in a multi-process launch only the main process prints."""
    if is_main_process():
        print(msg, file=sys.stderr, flush=True)


def base_model_for_adapter(adapter_dir: str | Path, model: str | None) -> str | None:
    """The base model to load for an adapter: the one asked for, else the one it names."""
    if model:
        return model
    return read_adapter_config(adapter_dir).get("base_model_name_or_path")


def adapter_method_hint(cfg: RunConfig) -> dict:
    """How to load a saved adapter when its files cannot tell the method: a QLoRA adapter
    is saved as plain LoRA, so when ``cfg.method`` (read from the run's config.yaml) is
    such a method, name it, with its options that the files lack; else recognise the
    method from adapter_config.json."""
    cls = METHODS.get(cfg.method)
    if cls is None or cls.auto_detect:
        return {}
    return {
        "method": cfg.method,
        "method_options": {k: cfg.adapter[k] for k in cls.local_options if k in cfg.adapter},
    }


def _saved_method(cfg: RunConfig, adapter_dir) -> Method | None:
    """The method a saved adapter will load as, when it must be named (QLoRA)."""
    hint = adapter_method_hint(cfg) if adapter_dir is not None else {}
    if not hint:
        return None
    return method_for_peft_config(
        read_adapter_config(adapter_dir), method=hint["method"], options=hint["method_options"]
    )


def open_session(
    cfg: RunConfig,
    adapter_dir: str | Path | None = None,
    new_adapter=False,
    with_data: bool = True,
    train_data: bool = True,
    device: torch.device | None = None,
) -> Session:
    """Load base model + tokenizer; add a fresh adapter (``new_adapter``) or a saved one
    (``adapter_dir``; a directory holding a whole model, such as a full fine-tune's, is
    loaded as the model itself).
    ``device``: where to put it (default: as ``cfg.train.device`` says; a process of a
    multi-GPU launch passes its own GPU)."""
    device = device or pick_device(cfg.train.device)
    precision = pick_precision(cfg.train.mixed_precision, device)
    name = cfg.model.name
    if adapter_dir is not None and is_model_dir(adapter_dir):
        # A whole model (a full fine-tune's run directory, a merged model) is itself the
        # model to load, with no adapter on top and no need of the base it started from.
        name, adapter_dir = str(adapter_dir), None
    elif adapter_dir is not None:
        name = base_model_for_adapter(adapter_dir, name)
    if new_adapter:
        method = get_method(cfg.method, **cfg.adapter)
        # The rank against each layer, the base's kind: from config.json, before loading.
        check_before_load(resolve_model_path(name), method, cfg.model.trust_remote_code)
    else:
        method = _saved_method(cfg, adapter_dir)
    # The method may load the base its own way (QLoRA quantizes while loading).
    loader = method.base_loader() if method is not None else None
    model, tok, model_id = load_base(
        name,
        dtype=parse_dtype(cfg.model.dtype),
        device=device,
        trust_remote_code=cfg.model.trust_remote_code,
        loader=loader,
        reclaim=reclaim,
    )
    s = Session(
        model,
        tok,
        model_id,
        device,
        precision,
        loss_options=LossOptions(cfg.train.response_only_head, _loss_chunk(cfg, device)),
    )
    if new_adapter:
        s.adapter = inject(model, method, model_id, lean_layers=cfg.train.lean_layers)
    elif adapter_dir is not None:
        s.adapter = load_adapter_into(model, adapter_dir, **adapter_method_hint(cfg))
    model.to(device)
    s.params = count_parameters(model)
    if with_data:
        _load_data(s, cfg, train_data)
    else:
        s.prompt = _prompt_format(s, cfg, cfg.data.data_format)
    return s


def command_inputs(
    cfg: RunConfig, adapter_dir: str | Path | None = None, *files: str | None
) -> tuple[list[Path], list[Path]]:
    """(the paths a command reads, the run directories it reads) for
    :func:`peftlab.core.rundir.refuse_inputs`: the adapter run's files, the base model's
    directory, the dataset and chat template files, and ``files`` (a config file), each
    only where it is a local path."""
    reads, homes = [], []
    if adapter_dir is not None and Path(adapter_dir).exists():
        homes.append(Path(adapter_dir))
        reads += run_reads(adapter_dir)
    model = cfg.model.name
    if adapter_dir is not None and model is None and not is_model_dir(adapter_dir):
        with contextlib.suppress(OSError, ValueError):
            model = base_model_for_adapter(adapter_dir, None)
    if _is_local(model, Path.is_dir):
        reads.append(Path(model))
    local = [cfg.data.dataset, cfg.data.chat_template, *files]  # a directory: their error
    reads += [Path(p) for p in local if _is_local(p, Path.is_file)]
    return reads, homes


def _is_local(text: str | None, kind) -> bool:
    if not isinstance(text, str) or not text or "\n" in text or "{" in text:
        return False
    try:
        return kind(Path(text).expanduser())
    except OSError:  # a template's text passed as the option, too long for a path
        return False


def _loss_chunk(cfg: RunConfig, device: torch.device) -> int:
    """The run's loss chunk; unset (a command outside a training run, which resolves it
    first): the device's default."""
    if cfg.train.loss_chunk is not None:
        return cfg.train.loss_chunk
    return resolve_defaults(torch.device(device).type, None, None).loss_chunk


def _prompt_format(s: Session, cfg: RunConfig, data_format: str) -> PromptFormat:
    """Resolve the prompt format and record it in ``cfg`` (a run's config.yaml then says
    what it trained with, and eval/generate/merge reload exactly that)."""
    d = cfg.data
    fmt = make_prompt_format(
        s.tokenizer, d.prompt_format, data_format, d.chat_template, d.train_on, s.model_id
    )
    d.prompt_format = fmt.kind
    d.chat_template = template_spec_to_save(d.chat_template)
    return fmt


def _load_data(s: Session, cfg: RunConfig, train_data: bool) -> None:
    d = cfg.data
    s.splits = load_splits(d.dataset, d.eval_fraction, d.skip_bad_records, d.data_format)
    d.data_format = s.splits.format
    s.prompt = _prompt_format(s, cfg, s.splits.format)
    if s.splits.skipped:
        log(f"skipped {s.splits.skipped} malformed record(s) of {s.splits.source}")
    ev = s.splits.train + s.splits.eval if d.eval_all else s.splits.eval
    ev = ev[: d.max_eval_records] if d.max_eval_records else ev
    s.eval_data = s.prompt.encode(ev, d.max_length, f"{s.splits.source} (eval)", d.skip_bad_records)
    if not s.eval_data.examples:
        raise ValueError(
            f"{s.splits.source}: no evaluation record left (eval split of "
            f"{len(ev)} record(s)); {_why_empty(s, d.max_length)}"
        )
    if train_data:
        s.train_data = s.prompt.encode(
            s.splits.train, d.max_length, s.splits.source, d.skip_bad_records
        )
        if not s.train_data.examples:
            raise ValueError(
                f"{s.splits.source}: no training record left of "
                f"{len(s.splits.train)}; {_why_empty(s, d.max_length)}"
            )
    for label, enc in (("train", s.train_data), ("eval", s.eval_data)):
        if enc is not None and enc.bad:
            log(f"{label}: skipped {enc.bad} record(s) the chat template refuses")
        if enc is not None and (enc.truncated or enc.dropped):
            log(
                f"warning: {label}: {enc.truncated} record(s) truncated to max_length="
                f"{d.max_length}, {enc.dropped} skipped ({_dropped_why(s)})"
            )


def _dropped_why(s: Session) -> str:
    if s.prompt.is_chat:
        return "every token to learn lies beyond max_length"
    return "prompt alone too long"


def _why_empty(s: Session, max_length: int) -> str:
    return f"every record was skipped because {_dropped_why(s)} (max_length={max_length})"


__all__ = ["Session", "open_session", "log"]
