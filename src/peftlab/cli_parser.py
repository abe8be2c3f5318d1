"""The ``peftlab`` command line's parser: one builder per subcommand.

Training options are generated from the config dataclasses (and every method's own
config), so a new option or a new method appears here with no change to this file.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig

_TYPES = {"int": int, "float": float, "str": str}
_METHOD_HELP = (
    "load the adapter as this method (a QLoRA adapter's files are plain LoRA: "
    "name qlora when the run's config.yaml is not beside them)"
)


def parse_targets(text: str) -> Any:
    """``q_proj,v_proj`` -> list; ``all-linear`` or a regular expression -> string."""
    if text == "all-linear" or any(c in text for c in "*^$|()[]\\+?"):
        return text
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_field(group, f: dataclasses.Field, flag: str | None = None) -> None:
    flag = flag or "--" + f.name.replace("_", "-")
    help_ = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
    kind = str(f.type).replace(" | None", "")
    kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_}
    if f.name in ("target_modules", "feedforward_modules"):  # IA³'s: same syntax
        kw["type"] = parse_targets
    elif kind == "bool":
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw["type"] = _TYPES.get(kind, str)
    try:
        group.add_argument(flag, **kw)
    except argparse.ArgumentError:
        pass  # two methods share an option name (e.g. r): one flag serves both


def _add_common(p: argparse.ArgumentParser, train_fields: bool) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        dest="model",
        default=argparse.SUPPRESS,
        help="Hub id or local directory (default: embedded SmolLM2-135M-Instruct)",
    )
    for f in dataclasses.fields(ModelConfig):
        if f.name != "name":
            _add_field(g, f)
    g = p.add_argument_group("data")
    for f in dataclasses.fields(DataConfig):
        _add_field(g, f)
    g = p.add_argument_group("training" if train_fields else "runtime")
    keep = (
        None
        if train_fields
        else {"device", "mixed_precision", "eval_batch_size", "exact_match_limit", "max_new_tokens"}
    )
    for f in dataclasses.fields(TrainConfig):
        if keep is None or f.name in keep:
            _add_field(g, f)


def _add_method_options(p: argparse.ArgumentParser) -> None:
    from .methods import METHODS

    p.add_argument(
        "--method",
        default=argparse.SUPPRESS,
        help=f"one of: {', '.join(sorted(METHODS))} (default {RunConfig.method})",
    )
    for name, cls in sorted(METHODS.items()):
        g = p.add_argument_group(f"{name} options")
        for f in dataclasses.fields(cls.config_cls):
            _add_field(g, f)


def _add_opt_in_methods(c: argparse.ArgumentParser) -> None:
    """``compare --<name>`` for each method not compared by default (``--full``)."""
    from .methods import METHODS

    for name, cls in sorted(METHODS.items()):
        if not cls.compare_by_default:
            doc = (cls.__doc__ or name).strip().splitlines()[0].rstrip(".")
            c.add_argument(
                f"--{name}",
                dest="extra_methods",
                action="append_const",
                const=name,
                help=f"also run {name}, which is not run by default ({doc})".replace("%", "%%"),
            )


def _add_lm_eval(p: argparse.ArgumentParser) -> None:
    h = p.add_argument_group("standard benchmarks (lm-evaluation-harness)")
    h.add_argument(
        "--lm-eval",
        metavar="TASKS",
        help="score the model (and an adapter's base) on these harness tasks, "
        "comma-separated, e.g. arc_easy,hellaswag; saved under lm_eval in the JSON",
    )
    h.add_argument("--lm-eval-include", metavar="DIR", help="add the task YAML files in DIR")
    h.add_argument("--lm-eval-limit", type=int, metavar="N", help="at most N documents per task")
    h.add_argument("--lm-eval-fewshot", type=int, metavar="K", help="K-shot (default: the task's)")


LM_EVAL_KEYS = {
    "lm_eval",
    "lm_eval_include",
    "lm_eval_limit",
    "lm_eval_fewshot",
    "lm_eval_skip_base",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peftlab",
        description="Parameter-efficient fine-tuning "
        "(LoRA and friends) in the Hugging Face PEFT format.",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error (also PEFTLAB_DEBUG=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        _add_train,
        _add_eval,
        _add_generate,
        _add_chat,
        _add_compare,
        _add_merge,
        _add_export,
    ):
        add(sub)
    from .memory.cli import add_plan_parser

    add_plan_parser(sub, _add_method_options, _add_common)
    return p


def _add_train(sub) -> None:
    """``peftlab train``: every training option, from the config dataclasses."""
    t = sub.add_parser("train", help="fine-tune a model")
    t.add_argument("--config", help="YAML file with the same keys as these options")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. train.lr=1e-4 (repeatable)",
    )
    t.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="train data-parallel in N processes, one per GPU (CPU processes "
        "with --device cpu): runs `accelerate launch --multi_gpu "
        "--num_processes N -m peftlab train` with the other options; "
        "batch_size is per process",
    )
    _add_method_options(t)
    _add_common(t, train_fields=True)


def _add_eval(sub) -> None:
    """``peftlab eval``: perplexity, exact match and harness tasks."""
    e = sub.add_parser("eval", help="perplexity and exact match of a model or adapter")
    e.add_argument("--adapter", help="adapter directory (default: evaluate the base model)")
    e.add_argument("--output", help="write the JSON here (default: ADAPTER/eval.json)")
    e.add_argument("--method", default=argparse.SUPPRESS, help=_METHOD_HELP)
    _add_lm_eval(e)
    e.add_argument(
        "--lm-eval-skip-base", action="store_true", help="score the adapter only, not its base"
    )
    _add_common(e, train_fields=False)


def _add_generate(sub) -> None:
    """``peftlab generate``: prompts or a conversation answered."""
    g = sub.add_parser("generate", help="complete a prompt")
    g.add_argument("--adapter")
    g.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="instruction or user message, asked in the run's prompt format "
        "(Alpaca, or the chat template for a chat run or with --chat); "
        "repeatable",
    )
    g.add_argument(
        "--chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask each prompt as a user message in the chat template (--no-chat: "
        "in the Alpaca prompt); default: as the run was trained",
    )
    g.add_argument(
        "--conversation",
        metavar="FILE",
        help="JSON file of a conversation ([{role, content}, ...] or "
        '{"messages": [...]}) to answer with one more assistant turn',
    )
    g.add_argument("--raw", action="store_true", help="send the prompt as it is")
    g.add_argument("--max-new-tokens", type=int, default=128)
    _add_runtime(g)


def _add_chat(sub) -> None:
    """``peftlab chat``: a terminal conversation."""
    ch = sub.add_parser("chat", help="talk to a model in its chat template (streamed)")
    ch.add_argument("--adapter")
    ch.add_argument("--system", help="system prompt for the conversation")
    ch.add_argument("--max-new-tokens", type=int, default=256)
    _add_runtime(ch)


def _add_compare(sub) -> None:
    """``peftlab compare``: what runs, where it goes."""
    c = sub.add_parser("compare", help="train every method on the same budget; report")
    c.add_argument(
        "--config",
        help="YAML: train keys, 'methods: [...]' and per-method options (e.g. 'lora: {r: 16}')",
    )
    c.add_argument(
        "--methods",
        help="comma-separated (default: the config's, else every "
        "method but those with a flag of their own below)",
    )
    c.add_argument("--output", required=True, help="directory for results and the report")
    c.add_argument("--no-base", action="store_true", help="skip the base-model row")
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output when it is not this comparison (its old contents are moved "
        "aside until the first result), or start this comparison again",
    )
    _add_opt_in_methods(c)
    _add_compare_budget(c)


def _add_compare_budget(c: argparse.ArgumentParser) -> None:
    """``peftlab compare``: the shared budget, seeds, evaluations and sweep."""
    for flag, kind in (
        ("--model", str),
        ("--dataset", str),
        ("--max-steps", int),
        ("--epochs", float),
        ("--seed", int),
        ("--device", str),
        ("--report-to", str),
        ("--experiment", str),
    ):
        c.add_argument(flag, type=kind)
    c.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="keep every run's peak memory "
        "under SIZE (e.g. 3GiB): each run chooses its token budget, "
        "checkpointing and allocator by the planner's prediction",
    )
    c.add_argument(
        "--seeds",
        help="train each method with N seeds (from --seed on) or "
        "with a list (1,7,42); verdicts then account for seed-to-seed spread",
    )
    c.add_argument(
        "--general-eval",
        metavar="FILE|bundled",
        help="also score the base and every run on this general instruction "
        "set (not the training data): what fine-tuning cost elsewhere",
    )
    _add_lm_eval(c)
    c.add_argument(
        "--sweep",
        metavar="OPTION=V1,V2,...",
        help="train each method once per value of one of its options (e.g. "
        "r=2,4,8,16,32): the parameter-efficiency curve; methods without the "
        "option run once",
    )


def _add_merge(sub) -> None:
    """``peftlab merge``: an adapter folded into its base."""
    m = sub.add_parser("merge", help="fold an adapter into its base model")
    m.add_argument("--adapter", required=True)
    m.add_argument("--output", required=True, help="directory for the merged model")
    m.add_argument("--dtype", default="float32", help="dtype of the saved weights")
    m.add_argument(
        "--requantize",
        action="store_true",
        help="quantize the merged model to NF4 again and save it in the "
        "bitsandbytes 4-bit format (prints the error this introduces)",
    )
    m.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output (never the adapter run itself)",
    )
    m.add_argument(
        "--dataset",
        default=argparse.SUPPRESS,
        help="records used to check the merge (default: the adapter's)",
    )
    _add_runtime(m)


def _add_export(sub) -> None:
    """``peftlab export``: GGUF files and the Modelfile."""
    x = sub.add_parser("export", help="write a GGUF file for llama.cpp / Ollama")
    x.add_argument("--adapter", help="run directory (default: export the base model)")
    x.add_argument("--output", required=True, help="the .gguf file to write")
    x.add_argument(
        "--format",
        default="gguf",
        choices=["gguf", "gguf-lora"],
        help="gguf: the model with the adapter merged in; gguf-lora: the adapter "
        "alone as a llama.cpp LoRA adapter (llama-cli --lora)",
    )
    x.add_argument(
        "--outtype",
        default="f16",
        choices=["f32", "f16", "bf16", "q8_0"],
        help="weight type of --format gguf (norms stay f32)",
    )
    x.add_argument(
        "--modelfile", action="store_true", help="also write an Ollama Modelfile beside the GGUF"
    )
    x.add_argument("--overwrite", action="store_true", help="replace existing files")
    x.add_argument("--no-progress", dest="progress", action="store_false")
    x.add_argument(
        "--dtype",
        default=argparse.SUPPRESS,
        help="dtype the base loads in (default: the run's); bfloat16 halves the "
        "memory of a large model, each layer is still merged in fp32",
    )
    _add_runtime(x)


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=argparse.SUPPRESS)
    p.add_argument("--device", default=argparse.SUPPRESS)
    p.add_argument("--method", default=argparse.SUPPRESS, help=_METHOD_HELP)
    p.add_argument(
        "--chat-template",
        default=argparse.SUPPRESS,
        help="chat template (chatml or a Jinja file) for a model without one",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=argparse.SUPPRESS,
        help="allow the model's own Python code to run (off by default)",
    )
