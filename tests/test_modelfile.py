"""The Ollama Modelfile: a TEMPLATE translated from the chat template by construction,
checked here by executing it with a minimal interpreter of the Go-template subset it
uses and comparing with the Jinja rendering of the same conversation."""

from __future__ import annotations

import copy
import re

import pytest

from peftlab.formats.modelfile import TemplateTranslationError, modelfile
from test_chat import LLAMA3_MARKED, MISTRAL_MARKED


def run_go(template: str, system: str | None, messages: list[dict]) -> str:
    """Execute the subset of Go templates the translation emits, with Go's trim markers
    ({{- and -}} eat the whitespace beside them) applied first."""
    template = re.sub(r"\s*\{\{-\s", "{{ ", template)
    template = re.sub(r"\s-\}\}\s*", " }}", template)
    lead = re.match(r"^(.*?)(?=\{\{ (?:if|range))", template, re.S).group(1)
    out = [lead]
    t = template[len(lead) :]
    m = re.match(r"\{\{ if \.System \}\}(.*?)\{\{ \.System \}\}(.*?)\{\{ end \}\}", t, re.S)
    if m:
        if system:
            out.append(m.group(1) + system + m.group(2))
        t = t[m.end() :]
    m = re.match(
        r'\{\{ range \.Messages \}\}\{\{ if eq \.Role "user" \}\}(.*?)'
        r'\{\{ \.Content \}\}(.*?)\{\{ else if eq \.Role "assistant" \}\}(.*?)'
        r"\{\{ \.Content \}\}(.*?)\{\{ end \}\}\{\{ end \}\}(.*)",
        t,
        re.S,
    )
    assert m, template
    for msg in messages:
        if msg["role"] == "user":
            out.append(m.group(1) + msg["content"] + m.group(2))
        else:
            out.append(m.group(3) + msg["content"] + m.group(4))
    out.append(m.group(5))
    return "".join(out)


def parse(text: str) -> dict:
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    system = re.search(r'SYSTEM """(.*?)"""', text, re.S)
    return {
        "template": template,
        "system": system.group(1) if system else None,
        "stops": re.findall(r'PARAMETER stop "(.*)"', text),
        "from": re.search(r"^FROM (.*)$", text, re.M).group(1),
    }


CONV = [
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What is 2+2?"},
]


def test_chatml_with_default_system_prompt(embedded_tokenizer):
    tok = embedded_tokenizer
    mf = parse(modelfile("m.gguf", tok, True, ["<|im_end|>"]))
    assert mf["from"] == "./m.gguf" and mf["stops"] == ["<|im_end|>"]
    assert mf["system"].startswith("You are a helpful AI assistant named SmolLM")
    want = tok.apply_chat_template(CONV, tokenize=False, add_generation_prompt=True)
    assert run_go(mf["template"], mf["system"], CONV) == want
    sys_conv = [{"role": "system", "content": "Be brief."}, *CONV]
    want = tok.apply_chat_template(sys_conv, tokenize=False, add_generation_prompt=True)
    assert run_go(mf["template"], "Be brief.", CONV) == want


@pytest.mark.parametrize("name", ["llama3", "mistral"])
def test_other_templates_translate(embedded_tokenizer, name):
    tok = copy.deepcopy(embedded_tokenizer)
    if name == "llama3":
        tok.add_special_tokens(
            {
                "additional_special_tokens": [
                    "<|begin_of_text|>",
                    "<|start_header_id|>",
                    "<|end_header_id|>",
                    "<|eot_id|>",
                ]
            }
        )
        tok.bos_token, tok.chat_template = "<|begin_of_text|>", LLAMA3_MARKED
    else:
        tok.add_special_tokens({"additional_special_tokens": ["<s>", "</s>"]})
        tok.bos_token, tok.eos_token, tok.chat_template = "<s>", "</s>", MISTRAL_MARKED
    mf = parse(modelfile("m.gguf", tok, True, ["</s>"]))
    want = tok.apply_chat_template(CONV, tokenize=False, add_generation_prompt=True)
    assert run_go(mf["template"], None, CONV) == want  # BOS: the tokenizer adds none
    if name == "mistral":
        assert ".System" not in mf["template"]  # the template has no system role


def test_position_dependent_template_is_refused(embedded_tokenizer):
    tok = copy.deepcopy(embedded_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}{{ loop.index }}: "
        "{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(TemplateTranslationError):
        modelfile("m.gguf", tok, True, [])


def test_alpaca_runs_get_the_alpaca_prompt(embedded_tokenizer):
    mf = parse(modelfile("m.gguf", embedded_tokenizer, False, ["<|im_end|>"]))
    assert mf["template"].endswith("### Instruction:\n{{ .Prompt }}\n\n### Response:\n")
