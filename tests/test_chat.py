"""Conversations in chat templates: formats, the loss mask by construction (checked
against transformers' own ``return_assistant_tokens_mask`` on templates with
``{% generation %}`` markers), truncation, ``train_on``, and every bad-input case."""

from __future__ import annotations

import copy
import json

import pytest

from peftlab.data.chat import (
    CHATML,
    ChatTemplateError,
    assistant_spans,
    encode_chat,
    end_of_turn_ids,
    target_mask,
)
from peftlab.data.prompting import make_prompt_format
from peftlab.data.records import BadRecordError, check_record, detect_format
from peftlab.data.sources import load_splits

# Test fixtures written for these tests: each marks the assistant's tokens (content +
# end-of-turn token) with {% generation %}, which transformers turns into its own
# assistant mask: an oracle that does not use peftlab's prefix construction.
CHATML_MARKED = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MISTRAL_MARKED = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
LLAMA3_MARKED = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

SYSTEM = {"role": "system", "content": "You are terse. Answer in one word."}
SINGLE = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris"},
]
MULTI = [
    {"role": "user", "content": "My name is Ana."},
    {"role": "assistant", "content": "Nice to meet you, Ana!"},
    {"role": "user", "content": "What is 2 + 3? Give only the number."},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "And my name? One word."},
    {"role": "assistant", "content": "Ana"},
]
CONVERSATIONS = {
    "single": SINGLE,
    "multi": MULTI,
    "system-single": [SYSTEM, *SINGLE],
    "system-multi": [SYSTEM, *MULTI],
}


@pytest.fixture(scope="module")
def templated(embedded_tokenizer):
    """name -> tokenizer carrying that template (and its special tokens)."""
    out = {}
    t = copy.deepcopy(embedded_tokenizer)
    t.chat_template = CHATML_MARKED
    out["chatml"] = t
    t = copy.deepcopy(embedded_tokenizer)
    t.add_special_tokens({"additional_special_tokens": ["[INST]", "[/INST]", "<s>", "</s>"]})
    t.bos_token, t.eos_token, t.chat_template = "<s>", "</s>", MISTRAL_MARKED
    out["mistral"] = t
    t = copy.deepcopy(embedded_tokenizer)
    t.add_special_tokens(
        {
            "additional_special_tokens": [
                "<|begin_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
            ]
        }
    )
    t.bos_token, t.chat_template = "<|begin_of_text|>", LLAMA3_MARKED
    out["llama3"] = t
    return out


def oracle(tok, messages):
    o = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return o["input_ids"], [bool(m) for m in o["assistant_masks"]]


def cases():
    for template in ("chatml", "mistral", "llama3"):
        for name, _conv in CONVERSATIONS.items():
            if template == "mistral" and name.startswith("system"):
                continue  # the Mistral-style template has no system role (tested below)
            yield template, name


@pytest.mark.parametrize("template,conv", list(cases()))
def test_mask_equals_the_templates_assistant_spans(templated, template, conv):
    tok, messages = templated[template], CONVERSATIONS[conv]
    ids, spans = assistant_spans(tok, messages)
    want_ids, want_mask = oracle(tok, messages)
    assert ids == want_ids
    assert target_mask(len(ids), spans, "all-assistant") == want_mask
    assert len(spans) == sum(m["role"] == "assistant" for m in messages)
    # The rendered training text is the template's own text.
    assert tok.decode(ids) == tok.apply_chat_template(messages, tokenize=False)
    # Each span is the answer plus exactly one end-of-turn token.
    for (start, end), m in zip(spans, [m for m in messages if m["role"] == "assistant"]):
        assert tok.decode(ids[start : end - 1]).strip() == m["content"]
        assert ids[end - 1] in end_of_turn_ids(tok)


@pytest.mark.parametrize("template", ["chatml", "mistral", "llama3"])
def test_last_assistant_masks_earlier_turns(templated, template):
    tok = templated[template]
    ids, spans = assistant_spans(tok, MULTI)
    last = target_mask(len(ids), spans, "last-assistant")
    start, end = spans[-1]
    assert [i for i, m in enumerate(last) if m] == list(range(start, end))
    assert all(target_mask(len(ids), spans, "all"))


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_truncation_keeps_the_mask_of_what_is_left(templated, template):
    tok = templated[template]
    want_ids, want_mask = oracle(tok, MULTI)
    _, spans = assistant_spans(tok, MULTI)
    cut = spans[1][0] + 1  # inside the second answer
    enc = encode_chat(tok, [{"messages": MULTI, "exact": False}], cut, "all-assistant")
    (ex,) = enc.examples
    assert ex.input_ids == want_ids[:cut] and ex.mask == want_mask[:cut]
    assert ex.truncated and enc.truncated == 1 and enc.dropped == 0


def test_conversation_cut_before_any_answer_is_counted_and_skipped(templated):
    tok = templated["chatml"]
    _, spans = assistant_spans(tok, SINGLE)
    recs = [
        {"messages": SINGLE, "exact": False},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ],
            "exact": False,
        },
    ]
    enc = encode_chat(tok, recs, spans[0][0], "all-assistant")
    assert enc.dropped == 1 and len(enc.examples) == 1


def test_template_that_renders_history_differently_is_refused(templated):
    tok = copy.deepcopy(templated["chatml"])
    # The last assistant turn gets a marker that earlier turns lose (as templates that
    # strip reasoning from history do): no prefix property, no exact mask.
    tok.chat_template = CHATML_MARKED.replace(
        "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}",
        "{{ message['content'] + ('!' if loop.last else '') + '<|im_end|>' }}{% endgeneration %}",
    )
    with pytest.raises(ChatTemplateError, match="assistant turn 1"):
        assistant_spans(tok, MULTI, "data.jsonl: record 3")


def test_mistral_template_refusal_names_the_record(templated):
    two_assistants = [SINGLE[0], SINGLE[1], {"role": "assistant", "content": "Really."}]
    with pytest.raises(BadRecordError, match=r"data.jsonl: record 7: turn 2: .*must alternate"):
        assistant_spans(templated["mistral"], two_assistants, "data.jsonl: record 7")
    with pytest.raises(BadRecordError, match="record 2: turn 0: .*must alternate"):
        assistant_spans(templated["mistral"], [SYSTEM, *SINGLE], "f: record 2")


def test_formats_are_detected_and_sharegpt_maps_roles():
    assert detect_format([{"messages": []}], "f") == "messages"
    assert detect_format([{"conversations": []}], "f") == "sharegpt"
    assert detect_format([{"instruction": "x", "output": "y"}], "f") == "alpaca"
    with pytest.raises(BadRecordError, match="cannot tell the data format.*text"):
        detect_format([{"text": "hello"}], "f.jsonl")
    rec = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hey"},
        ]
    }
    assert check_record(rec, "f", 0, "sharegpt")["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hey"},
    ]


BAD = {
    "unknown role": ({"messages": [{"role": "robot", "content": "x"}]}, r"turn 0: unknown role"),
    "no assistant": ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    "empty content": (
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
        r"turn 1: 'content' is empty",
    ),
    "non-string": (
        {"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}]},
        r"turn 0: 'content' must be a string, got list",
    ),
    "not a list": ({"messages": "hi"}, "'messages' must be a list of turns, got str"),
    "missing": ({"msgs": []}, "field 'messages' is missing"),
    "turn not object": ({"messages": ["hi"]}, "turn 0: expected an object"),
    "late system": (
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "b"},
                {"role": "assistant", "content": "c"},
            ]
        },
        "turn 1: a system turn is allowed only as the first turn",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_conversation_names_file_record_and_turn(tmp_path, name):
    rec, pattern = BAD[name]
    good = {"messages": SINGLE}
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [good, good, rec, good]))
    with pytest.raises(BadRecordError, match=f"{path}: record 2: .*{pattern}"):
        load_splits(str(path), data_format="messages")
    s = load_splits(str(path), eval_fraction=0.25, skip_bad_records=True, data_format="messages")
    assert s.skipped == 1 and len(s.train) + len(s.eval) == 3


def test_forced_format_that_does_not_fit_names_the_field(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([{"messages": SINGLE}, {"messages": SINGLE}]))
    assert load_splits(str(path)).format == "messages"
    with pytest.raises(BadRecordError, match="record 0: field 'conversations' is missing"):
        load_splits(str(path), data_format="sharegpt")


def test_prompt_format_auto_and_its_refusals(templated, embedded_tokenizer):
    tok = copy.deepcopy(embedded_tokenizer)
    assert make_prompt_format(tok, "auto", "alpaca", None, "all-assistant").kind == "alpaca"
    assert make_prompt_format(tok, "auto", "sharegpt", None, "all-assistant").kind == "chat"
    with pytest.raises(ValueError, match="only be rendered with a chat template"):
        make_prompt_format(tok, "alpaca", "messages", None, "all-assistant")
    tok.chat_template = None
    with pytest.raises(ValueError, match="has no chat template; give one with --chat-template"):
        make_prompt_format(tok, "chat", "messages", None, "all-assistant")
    fmt = make_prompt_format(tok, "chat", "alpaca", "chatml", "all-assistant")
    assert tok.chat_template == CHATML
    rec = {"instruction": "Name a colour.", "input": "Pick one.", "output": "red", "exact": True}
    assert fmt.prompt(rec) == (
        "<|im_start|>user\nName a colour.\n\nPick one.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert fmt.answer(rec) == "red"
    with pytest.raises(ValueError, match="neither a built-in template"):
        make_prompt_format(tok, "chat", "alpaca", "no-such-template", "all-assistant")


def test_hub_conversations_are_detected_and_checked(monkeypatch):
    import datasets

    rows = [
        {"conversations": [{"from": "human", "value": f"Say {w}."}, {"from": "gpt", "value": w}]}
        for w in ("a", "b", "c", "d")
    ]
    bad = {"conversations": [{"from": "human", "value": "x"}, {"from": "bot", "value": "y"}]}
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows),
            "test": datasets.Dataset.from_list(rows[:2] + [bad]),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda dataset_id: dd)
    with pytest.raises(
        BadRecordError,
        match=r"org/chats\[test\]: record 2: turn 1: unknown "
        "role 'bot'",
    ):
        load_splits("org/chats")
    s = load_splits("org/chats", skip_bad_records=True)
    assert s.format == "sharegpt" and len(s.train) == 4 and len(s.eval) == 2
    assert s.train[0]["messages"][1] == {"role": "assistant", "content": "a"}
