"""Chat data end to end: train, evaluate, generate, merge and compare on conversations,
with the run's format and template reloaded from its config.yaml; and (slow) the chat
demo's adapter answering through plain transformers + peft exactly as `peftlab
generate --chat` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import peftlab
from peftlab.cli import main
from peftlab.data.chat import CHATML

WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "orbit"]


def write_chat_dataset(path: Path, n: int = 40, fmt: str = "messages") -> str:
    """Learnable conversations: single-turn word repeats and two-turn recalls."""
    recs = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        turns = [("user", f"Repeat the word {w}. One word."), ("assistant", w)]
        if i % 3 == 0:
            turns = [
                ("system", "Answer in one word."),
                ("user", f"Remember {w}."),
                ("assistant", "Noted."),
                ("user", "What did I ask you to remember?"),
                ("assistant", w),
            ]
        if fmt == "messages":
            recs.append({"messages": [{"role": r, "content": c} for r, c in turns], "exact": True})
        else:
            names = {"system": "system", "user": "human", "assistant": "gpt"}
            recs.append(
                {"conversations": [{"from": names[r], "value": c} for r, c in turns], "exact": True}
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def chat_run(tmp_path, model_dir, fmt="messages", **kw) -> tuple[Path, dict]:
    data = write_chat_dataset(tmp_path / f"chat-{fmt}.jsonl", fmt=fmt)
    out = tmp_path / f"run-{fmt}"
    args = dict(
        model=model_dir,
        dataset=data,
        output=str(out),
        max_steps=4,
        batch_size=4,
        lr=5e-3,
        r=4,
        alpha=8,
        mixed_precision="no",
        exact_match_limit=3,
        max_new_tokens=4,
        progress=False,
        max_length=96,
        seed=3,
        save_every=0,
        eval_every=0,
    )
    args.update(kw)
    return out, peftlab.train(**args)


@pytest.mark.parametrize("fmt", ["messages", "sharegpt"])
def test_training_on_conversations_records_format_and_template(tmp_path, tiny_model_dir, fmt):
    out, res = chat_run(tmp_path, tiny_model_dir, fmt)
    assert res["data"] == {
        "source": str(tmp_path / f"chat-{fmt}.jsonl"),
        "format": fmt,
        "prompt_format": "chat",
        "chat_template": "model's own",
        "train_on": "all-assistant",
    }
    assert res["after"]["exact_n"] == 3  # exact match asked in the template
    saved = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert saved["data_format"] == fmt and saved["prompt_format"] == "chat"
    # eval reloads the chat set-up from config.yaml, without flags, to the same numbers
    ev = peftlab.evaluate(adapter=out, output=tmp_path / "ev.json", mixed_precision="no")
    assert ev["data"]["prompt_format"] == "chat"
    assert ev["perplexity"] == pytest.approx(res["after"]["perplexity"], rel=1e-5)


def test_chat_template_for_a_model_without_one_travels_to_the_merged_model(
    tmp_path, tiny_model_dir
):
    from transformers import AutoTokenizer

    bare = tmp_path / "bare"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    tok.save_pretrained(bare)
    for f in Path(tiny_model_dir).iterdir():
        if f.suffix in (".safetensors",) or f.name in ("config.json", "generation_config.json"):
            (bare / f.name).write_bytes(f.read_bytes())
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="has no chat template"):
        chat_run(tmp_path, str(bare))
    out, res = chat_run(tmp_path, str(bare), chat_template="chatml")
    assert res["data"]["chat_template"] == "chatml"
    merged = tmp_path / "merged"
    peftlab.merge(out, merged)
    assert AutoTokenizer.from_pretrained(merged).chat_template == CHATML
    # generate --chat reloads the template from the run's config.yaml
    text = peftlab.generate(
        "Repeat the word apple. One word.", adapter=out, max_new_tokens=3, mixed_precision="no"
    )
    assert isinstance(text[0], str)


def test_every_record_cut_before_its_answer_is_a_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(
        ValueError,
        match="every record was skipped because every token to learn lies beyond max_length",
    ):
        chat_run(tmp_path, tiny_model_dir, max_length=8)


def test_cli_generate_chat_and_conversation(tmp_path, tiny_model_dir, capsys):
    out, _ = chat_run(tmp_path, tiny_model_dir)
    conv = tmp_path / "conv.json"
    conv.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Remember lemon."},
                    {"role": "assistant", "content": "Noted."},
                    {"role": "user", "content": "What was it?"},
                ]
            }
        )
    )
    rc = main(
        [
            "generate",
            "--adapter",
            str(out),
            "--prompt",
            "Repeat the word river.",
            "--conversation",
            str(conv),
            "--max-new-tokens",
            "3",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "### Repeat the word river." in text and f"### conversation {conv}" in text
    conv.write_text(json.dumps([{"role": "user", "content": "Repeat the word stone."}]))
    assert (
        main(
            [
                "generate",
                "--adapter",
                str(out),
                "--conversation",
                str(conv),
                "--max-new-tokens",
                "2",
            ]
        )
        == 0
    )  # a conversation to answer: no reply yet
    capsys.readouterr()
    conv.write_text(json.dumps([{"role": "robot", "content": "x"}]))
    assert main(["generate", "--adapter", str(out), "--conversation", str(conv)]) == 2
    assert "turn 0: unknown role 'robot'" in capsys.readouterr().err


def test_compare_on_conversations_names_format_and_template(tmp_path, tiny_model_dir):
    from peftlab.compare.harness import compare
    from peftlab.compare.report import write_report

    data = write_chat_dataset(tmp_path / "chat.jsonl")
    cfg = {
        "methods": ["lora", "ia3"],
        "model": tiny_model_dir,
        "dataset": data,
        "max_steps": 2,
        "batch_size": 4,
        "mixed_precision": "no",
        "exact_match_limit": 2,
        "max_new_tokens": 3,
        "max_length": 96,
        "eval_every": 0,
        "save_every": 0,
    }
    compare(cfg, None, tmp_path / "cmp", report=False)
    text = write_report(tmp_path / "cmp")["text"]
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "messages" in md and "chat template (model's own), loss on all-assistant" in md
    assert text


@pytest.mark.slow
def test_chat_demo_adapter_answers_in_transformers_as_in_peftlab(tmp_path):
    """A few steps of configs/chat-demo.yaml on the embedded model; plain transformers +
    peft, prompted with apply_chat_template(add_generation_prompt=True), generate the
    same greedy tokens as `peftlab generate --chat`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peftlab.model.load import resolve_model_path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "chat-demo"
    peftlab.train(
        root / "configs" / "chat-demo.yaml",
        output=str(out),
        max_steps=3,
        exact_match_limit=2,
        eval_every=0,
        save_every=0,
        progress=False,
        max_eval_records=8,
    )
    questions = [
        "What is the capital of Italy? Give only the name.",
        "Give one tip for sleeping well.",
    ]
    ours = peftlab.generate(
        questions, adapter=out, chat=True, max_new_tokens=24, mixed_precision="no"
    )
    base_dir = resolve_model_path(None)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), out)
    model.eval()
    for q, mine in zip(questions, ours):
        ids = tok.apply_chat_template(
            [{"role": "user", "content": q}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=24, do_sample=False)
        theirs = tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert theirs == mine
        assert mine.strip()


def test_cli_chat_streams_replies_and_keeps_the_conversation(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    out, _ = chat_run(tmp_path, tiny_model_dir)
    said = []
    real_say = peftlab.api.Chat.say

    def spy(self, text, on_text=None):
        said.append([m["role"] for m in self.messages])  # the history before this turn
        return real_say(self, text, on_text)

    monkeypatch.setattr(peftlab.api.Chat, "say", spy)
    lines = iter(["Remember lemon.", "What was it?", "/reset", "Hi", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert (
        main(["chat", "--adapter", str(out), "--system", "Be brief.", "--max-new-tokens", "3"]) == 0
    )
    assert said == [["system"], ["system", "user", "assistant"], ["system"]]
    assert capsys.readouterr().out.count("assistant> ") == 3
