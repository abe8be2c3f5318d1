"""``peftlab`` command line: train | eval | generate | chat | compare | merge | export |
plan.

Training options are generated from the config dataclasses (and every method's own
config), so a new option or a new method appears here with no change to this file.
Precedence: defaults < ``--config`` YAML < command-line flags < ``--set key=value``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import api
from .config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    check_method_options,
    parse_override,
    set_dotted,
)
from .core.signals import Terminated, signals_as_interrupts
from .lmeval import parse_spec

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


def _lm_eval_spec(ns: argparse.Namespace):
    skip = getattr(ns, "lm_eval_skip_base", False)
    return parse_spec(
        ns.lm_eval, ns.lm_eval_include, ns.lm_eval_limit, None, ns.lm_eval_fewshot, not skip
    )


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
    e = sub.add_parser("eval", help="perplexity and exact match of a model or adapter")
    e.add_argument("--adapter", help="adapter directory (default: evaluate the base model)")
    e.add_argument("--output", help="write the JSON here (default: ADAPTER/eval.json)")
    e.add_argument("--method", default=argparse.SUPPRESS, help=_METHOD_HELP)
    _add_lm_eval(e)
    e.add_argument(
        "--lm-eval-skip-base", action="store_true", help="score the adapter only, not its base"
    )
    _add_common(e, train_fields=False)
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
    ch = sub.add_parser("chat", help="talk to a model in its chat template (streamed)")
    ch.add_argument("--adapter")
    ch.add_argument("--system", help="system prompt for the conversation")
    ch.add_argument("--max-new-tokens", type=int, default=256)
    _add_runtime(ch)
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
    from .memory.cli import add_plan_parser

    add_plan_parser(sub, _add_method_options, _add_common)
    return p


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


def _overrides(ns: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k not in skip | {"debug"}}


# Exit status: 2 for a usage error (options, config, input files that cannot be used:
# nothing ran), 1 for a failure while running, 130 for Ctrl-C (143 for SIGTERM, 129 for
# SIGHUP).
USAGE_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    UnicodeDecodeError,
)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    argv = sys.argv[1:] if argv is None else list(argv)
    ns = build_parser().parse_args(argv)
    debug = ns.debug or os.environ.get("PEFTLAB_DEBUG", "") not in ("", "0")
    try:
        with signals_as_interrupts():  # SIGTERM, SIGHUP: the same cleanup as Ctrl-C
            if ns.command == "train" and ns.num_processes != 1:
                return _launch(ns, argv)
            return _run(ns)
    except KeyboardInterrupt as e:
        if debug:
            raise
        how = f" ({e})" if isinstance(e, Terminated) else ""
        with contextlib.suppress(OSError):  # stderr may be gone (a closed terminal)
            print(f"\npeftlab {ns.command}: interrupted{how}{_resume_hint(ns)}", file=sys.stderr)
        return e.exit_status if isinstance(e, Terminated) else 130
    except Exception as e:  # one line naming the file or option; --debug: the traceback
        if debug:
            raise
        print(f"peftlab {ns.command}: error: {_message(e)}", file=sys.stderr)
        return 2 if isinstance(e, USAGE_ERRORS) else 1


def _message(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, (ValueError, OSError, RuntimeError, FloatingPointError)):
        return text
    return f"{type(e).__name__}: {text} (run with --debug for the traceback)"


def _resume_hint(ns: argparse.Namespace) -> str:
    if ns.command != "train":
        return ""
    out = getattr(ns, "output", None) or "the output directory"
    from .training.checkpoint import list_checkpoints

    found = list_checkpoints(out) if getattr(ns, "output", None) else []
    last = f" at the checkpoint of step {int(found[-1].name.split('-')[1])}" if found else ""
    return f"; the run in {out} can go on{last} with --resume"


def _train_config(ns: argparse.Namespace):
    cfg = api.build_config(
        ns.config,
        **_overrides(
            ns, {"command", "config", "set", "num_processes", "fit", "methods", "json", "no_data"}
        ),
    )
    for text in ns.set:
        key, value = parse_override(text)
        set_dotted(cfg, key, value)
    check_method_options(cfg)
    return cfg


def _plan_configs(ns: argparse.Namespace):
    """``plan``'s configuration: a train config's, or one per method of a comparison
    config (``methods: [...]``, ``lora: {r: 16}``), each planned on its own."""
    from .compare.harness import method_configs
    from .config import load_yaml

    data = load_yaml(ns.config) if ns.config else {}
    skip = {"command", "config", "set", "num_processes", "fit", "methods", "json", "no_data"}
    methods = ns.methods.split(",") if ns.methods else None
    cfgs = method_configs(data, methods, **_overrides(ns, skip))
    if cfgs is None:
        return _train_config(ns)
    for cfg in cfgs.values():
        for text in ns.set:
            set_dotted(cfg, *parse_override(text))
        check_method_options(cfg)
    return cfgs


def _launch(ns: argparse.Namespace, argv: list[str]) -> int:
    """``train --num-processes N``: check the options here, then start N processes."""
    from .training.distributed import relaunch

    if ns.num_processes < 1:
        raise ValueError(f"--num-processes must be at least 1, got {ns.num_processes}")
    _train_config(ns)  # a bad option fails once, here, not in every process
    return relaunch(ns.num_processes, _drop_option(argv, "--num-processes"))


def _drop_option(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value (``--flag N``, ``--flag=N`` or an
    abbreviation argparse accepted)."""
    out, skip = [], False
    for tok in argv:
        name = tok.split("=", 1)[0]
        if skip:
            skip = False
        elif len(name) > 2 and flag.startswith(name) and name.startswith("--"):
            skip = "=" not in tok
        else:
            out.append(tok)
    return out


def _run(ns: argparse.Namespace) -> int:
    if ns.command == "train":
        from .training.distributed import is_main_process

        res = api.train(_train_config(ns))
        if is_main_process():
            from .training.metrics import scalars

            keys = ("before", "after", "params", "tokens_per_s", "peak_memory_bytes")
            print(
                json.dumps(
                    {
                        k: scalars(res[k]) if k in ("before", "after") else res[k]
                        for k in keys
                        if k in res and res[k] is not None
                    },
                    indent=2,
                    default=str,
                )
            )
    elif ns.command == "eval":
        over = _overrides(ns, {"command", "adapter", "output"} | LM_EVAL_KEYS)
        res = api.evaluate(ns.adapter, ns.output, _lm_eval_spec(ns), **over)
        if "lm_eval" in res:  # every document's score stays in the JSON file only
            res["lm_eval"] = {k: v["scores"] for k, v in res["lm_eval"].items()}
        print(json.dumps(res, indent=2))
    elif ns.command == "generate":
        _generate(ns)
    elif ns.command == "chat":
        _chat(ns)
    elif ns.command == "export":
        from .export import export

        res = export(
            ns.adapter,
            ns.output,
            ns.format,
            ns.outtype,
            ns.modelfile,
            ns.overwrite,
            ns.progress,
            **_overrides(
                ns,
                {
                    "command",
                    "adapter",
                    "output",
                    "format",
                    "outtype",
                    "modelfile",
                    "overwrite",
                    "progress",
                },
            ),
        )
        print(json.dumps(res, indent=2))
    elif ns.command == "compare":
        from .compare.harness import compare
        from .compare.report import write_report

        compare(
            ns.config,
            ns.methods.split(",") if ns.methods else None,
            ns.output,
            include_base=not ns.no_base,
            report=False,
            model=ns.model,
            dataset=ns.dataset,
            max_steps=ns.max_steps,
            epochs=ns.epochs,
            seed=ns.seed,
            seeds=ns.seeds,
            general_eval=ns.general_eval,
            lm_eval=_lm_eval_spec(ns),
            sweep=ns.sweep,
            device=ns.device,
            extra_methods=ns.extra_methods,
            max_memory=ns.max_memory,
            overwrite=ns.overwrite,
            report_to=ns.report_to,
            experiment=ns.experiment,
        )
        print(write_report(Path(ns.output))["text"])
    elif ns.command == "plan":
        from .memory.cli import print_plan, run_plan

        print_plan(run_plan(ns, _plan_configs), ns.json)
    elif ns.command == "merge":
        res = api.merge(
            ns.adapter,
            ns.output,
            ns.dtype,
            requantize=ns.requantize,
            overwrite=ns.overwrite,
            **_overrides(
                ns, {"command", "adapter", "output", "dtype", "requantize", "overwrite", "debug"}
            ),
        )
        print(json.dumps(res, indent=2))
    return 0


def _generate(ns: argparse.Namespace) -> None:
    conversation = _read_conversation(ns.conversation) if ns.conversation else None
    if not ns.prompt and conversation is None:
        raise ValueError("give --prompt (repeatable) or --conversation FILE")
    outs = api.generate(
        ns.prompt,
        ns.adapter,
        ns.max_new_tokens,
        ns.raw,
        ns.chat,
        conversation,
        **_overrides(
            ns, {"command", "adapter", "prompt", "raw", "max_new_tokens", "chat", "conversation"}
        ),
    )
    labels = ns.prompt + ([f"conversation {ns.conversation}"] if conversation else [])
    for label, text in zip(labels, outs):
        print(f"### {label}\n{text.strip()}\n")


def _read_conversation(path: str) -> list:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--conversation {path}: cannot read a JSON conversation ({e})") from None
    return data.get("messages") if isinstance(data, dict) else data


def _chat(ns: argparse.Namespace) -> None:
    """A terminal conversation: replies stream as they are generated; /reset starts
    over, /exit (or Ctrl-D) ends."""
    session = api.Chat(
        ns.adapter,
        ns.system,
        ns.max_new_tokens,
        **_overrides(ns, {"command", "adapter", "system", "max_new_tokens"}),
    )
    print("peftlab chat: /reset starts over, /exit or Ctrl-D ends", file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            session.reset()
            continue
        if text:
            print("assistant> ", end="", flush=True)
            session.say(text, on_text=lambda chunk: print(chunk, end="", flush=True))
            print()


if __name__ == "__main__":
    sys.exit(main())
