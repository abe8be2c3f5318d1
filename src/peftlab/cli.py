"""``peftlab`` command line: train | eval | generate | chat | compare | merge | export |
plan.

The parser is built in ``cli_parser.py``; this module runs the command it parsed.
Precedence: defaults < ``--config`` YAML < command-line flags < ``--set key=value``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import api
from .cli_parser import LM_EVAL_KEYS, build_parser, parse_targets
from .config import check_method_options, parse_override, set_dotted
from .core.signals import Terminated, signals_as_interrupts
from .lmeval import parse_spec

__all__ = ["build_parser", "main", "parse_targets"]


def _lm_eval_spec(ns: argparse.Namespace):
    skip = getattr(ns, "lm_eval_skip_base", False)
    return parse_spec(
        ns.lm_eval, ns.lm_eval_include, ns.lm_eval_limit, None, ns.lm_eval_fewshot, not skip
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
    from .compare.grid import method_configs
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
    _COMMANDS[ns.command](ns)
    return 0


def _train(ns: argparse.Namespace) -> None:
    from .training.distributed import is_main_process

    res = api.train(_train_config(ns))
    if is_main_process():
        from .training.metrics import scalars

        keys = ("before", "after", "params", "tokens_per_s", "peak_memory_bytes")
        shown = {
            k: scalars(res[k]) if k in ("before", "after") else res[k]
            for k in keys
            if k in res and res[k] is not None
        }
        print(json.dumps(shown, indent=2, default=str))


def _eval(ns: argparse.Namespace) -> None:
    over = _overrides(ns, {"command", "adapter", "output"} | LM_EVAL_KEYS)
    res = api.evaluate(ns.adapter, ns.output, _lm_eval_spec(ns), **over)
    if "lm_eval" in res:  # every document's score stays in the JSON file only
        res["lm_eval"] = {k: v["scores"] for k, v in res["lm_eval"].items()}
    print(json.dumps(res, indent=2))


def _export(ns: argparse.Namespace) -> None:
    from .export import export

    named = {"command", "adapter", "output", "format", "outtype", "modelfile", "overwrite"}
    res = export(
        ns.adapter,
        ns.output,
        ns.format,
        ns.outtype,
        ns.modelfile,
        ns.overwrite,
        ns.progress,
        **_overrides(ns, named | {"progress"}),
    )
    print(json.dumps(res, indent=2))


def _compare(ns: argparse.Namespace) -> None:
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


def _plan(ns: argparse.Namespace) -> None:
    from .memory.cli import print_plan, run_plan

    print_plan(run_plan(ns, _plan_configs), ns.json)


def _merge(ns: argparse.Namespace) -> None:
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


_COMMANDS = {
    "train": _train,
    "eval": _eval,
    "generate": _generate,
    "chat": _chat,
    "compare": _compare,
    "plan": _plan,
    "merge": _merge,
    "export": _export,
}


if __name__ == "__main__":
    sys.exit(main())
