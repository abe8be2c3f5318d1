"""End to end on the embedded model: train -> eval -> merge -> generate, and PEFT interop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from peftlab import load_adapter
from peftlab.cli import main
from peftlab.formats.card import read_front_matter
from peftlab.model.load import resolve_model_path

pytestmark = pytest.mark.slow
FAST = [
    "--max-eval-records",
    "8",
    "--exact-match-limit",
    "2",
    "--max-new-tokens",
    "4",
    "--max-length",
    "128",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "adapter"
    rc = main(
        [
            "train",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "5e-3",
            "--r",
            "4",
            "--alpha",
            "8",
            "--target-modules",
            "q_proj,v_proj,down_proj",
            "--output",
            str(out),
            "--no-progress",
            *FAST,
        ]
    )
    assert rc == 0
    return out


def embedded_inputs(tok):
    enc = tok(
        ["### Instruction:\nName a colour.\n\n### Response:\n", "Hello there"],
        return_tensors="pt",
        padding=True,
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_train_writes_peft_adapter_and_results(trained):
    cfg = json.loads((trained / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM"
    assert cfg["r"] == 4 and sorted(cfg["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    # A reference that loads: the embedded model's converted directory, not its bare name.
    assert cfg["base_model_name_or_path"] == resolve_model_path(None)
    assert (Path(cfg["base_model_name_or_path"]) / "config.json").is_file()
    res = json.loads((trained / "results.json").read_text())
    assert 0 < res["params"]["trainable"] < res["params"]["total"]
    assert res["before"]["perplexity"] > 1 and res["after"]["perplexity"] > 1


def test_eval_cli_writes_json(trained, capsys):
    assert main(["eval", "--adapter", str(trained), *FAST]) == 0
    res = json.loads((trained / "eval.json").read_text())
    for key in ("perplexity", "eval_loss", "exact_match", "eval_tokens"):
        assert key in res, key
    after = json.loads((trained / "results.json").read_text())["after"]
    assert res["eval_tokens"] == after["eval_tokens"]
    assert res["perplexity"] == pytest.approx(after["perplexity"], rel=1e-3)
    assert json.loads(capsys.readouterr().out)["eval_tokens"] == res["eval_tokens"]


def test_merge_cli_gives_same_logits_as_adapter(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    from peftlab.model.load import load_base

    merged_dir = tmp_path / "merged"
    assert (
        main(
            [
                "merge",
                "--adapter",
                str(trained),
                "--output",
                str(merged_dir),
                "--dataset",
                "bundled",
            ]
        )
        == 0
    )
    card = read_front_matter(merged_dir / "README.md")
    assert card["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card["library_name"] == "transformers" and "merged" in card["tags"]
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    adapted = load_adapter(trained)
    base, tok, _ = load_base(None)
    inputs = embedded_inputs(tok)
    with torch.no_grad():
        ref = adapted(**inputs).logits
        assert (base(**inputs).logits - ref).abs().max() > 1e-3, "adapter must be non-trivial"
        assert (merged(**inputs).logits - ref).abs().max() <= 1e-4


def test_peft_loads_trained_adapter_on_embedded_model(trained):
    peft = pytest.importorskip("peft")
    from peftlab.model.load import load_base

    base, tok, _ = load_base(None)
    theirs = peft.PeftModel.from_pretrained(base, str(trained)).eval()
    ours = load_adapter(trained)
    inputs = embedded_inputs(tok)
    with torch.no_grad():
        assert (theirs(**inputs).logits - ours(**inputs).logits).abs().max() <= 1e-5


def test_auto_peft_model_loads_run_dir_offline(trained):
    """The adapter names a base that loads: peft alone, given only the run directory,
    gives peftlab's logits (the embedded model's Q4_1 weights, dequantized)."""
    peft = pytest.importorskip("peft")
    from peftlab.model.load import load_tokenizer

    theirs = peft.AutoPeftModelForCausalLM.from_pretrained(str(trained)).eval()
    ours = load_adapter(trained)
    inputs = embedded_inputs(load_tokenizer(resolve_model_path(None)))
    with torch.no_grad():
        ref = ours(**inputs).logits
        assert (theirs(**inputs).logits - ref).abs().max() <= 1e-5


def test_run_card_names_base_model_and_method(trained):
    text = (trained / "README.md").read_text()
    meta = read_front_matter(trained / "README.md")
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "peft"
    assert meta["tags"][:2] == ["lora", "peftlab"]
    assert "datasets" not in meta  # the bundled set is no Hub dataset
    res = json.loads((trained / "results.json").read_text())
    assert f"{res['after']['perplexity']:.4g}" in text  # the measured evaluation
    assert "Q4_1 GGUF" in text and resolve_model_path(None) in text
    assert "AutoPeftModelForCausalLM" in text and "ollama create" in text


def test_generate_cli(trained, capsys):
    assert (
        main(
            [
                "generate",
                "--adapter",
                str(trained),
                "--prompt",
                "Name a colour.",
                "--max-new-tokens",
                "6",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("### Name a colour.\n") and len(out.strip().splitlines()) >= 2


def test_eval_base_model_without_adapter(tmp_path):
    target = tmp_path / "base.json"
    assert main(["eval", "--output", str(target), *FAST]) == 0
    assert json.loads(target.read_text())["adapter"] is None


def test_cli_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--target-modules",
                "q_prj",
                "--output",
                str(tmp_path),
                "--max-steps",
                "1",
                *FAST,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "q_prj" in err and "q_proj" in err and "Traceback" not in err
    assert main(["eval", "--model", "./no/such/dir", *FAST]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "peftlab", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "--target-modules" in out.stdout and "--lr" in out.stdout
