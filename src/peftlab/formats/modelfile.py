"""An Ollama ``Modelfile`` for an exported GGUF: FROM, TEMPLATE, SYSTEM and stop tokens.

The TEMPLATE (Go template syntax) is translated from the run's prompt format by
construction, not from a table of known templates: a probe conversation whose turns are
sentinel strings is rendered with the Jinja chat template, the text around each
sentinel gives the pieces before and after a system, user and assistant turn, and the
Go template is assembled from them. It is then checked by rendering the probe with the
pieces and comparing with Jinja's text; a template that does not decompose so (one that
renders turns depending on their position, say) is refused with a message.
"""

from __future__ import annotations

from ..data.alpaca import PROMPT_NO_INPUT
from .gguf_vocab import adds_bos

_S, _U1, _A1, _U2 = "\x01SYS\x01", "\x01USER1\x01", "\x01ASSISTANT1\x01", "\x01USER2\x01"


class TemplateTranslationError(ValueError):
    """A chat template that cannot be written as an Ollama TEMPLATE."""


def _render(tok, messages, gen):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def _after(text: str, sentinel: str) -> str:
    return text.split(sentinel, 1)[1]


def _strip(prefix: str, text: str, what: str) -> str:
    if not text.startswith(prefix):
        raise TemplateTranslationError(
            f"the chat template's {what} does not decompose into fixed pieces around each turn"
        )
    return text[len(prefix) :]


def chat_pieces(tok) -> dict:
    """The fixed text around each turn of ``tok``'s chat template."""
    user1 = {"role": "user", "content": _U1}
    asst1 = {"role": "assistant", "content": _A1}
    conv = [user1, asst1, {"role": "user", "content": _U2}]
    full = _render(tok, conv, True)
    one = _render(tok, [user1], False)
    p = {"user_suffix": _after(one, _U1)}
    p["generation"] = _strip(
        _render(tok, [user1], False), _render(tok, [user1], True), "generation prompt"
    )
    p["assistant_prefix"] = _strip(
        p["user_suffix"], full.split(_U1, 1)[1].split(_A1)[0], "assistant turn"
    )
    p["assistant_suffix"] = _after(_render(tok, [user1, asst1], False), _A1)
    p["user_prefix"] = _strip(
        p["assistant_suffix"], full.split(_A1, 1)[1].split(_U2)[0], "user turn"
    )
    p["head"] = one.split(_U1)[0]  # BOS, a default system prompt, then user_prefix
    rebuilt = (
        p["head"]
        + _U1
        + p["user_suffix"]
        + p["assistant_prefix"]
        + _A1
        + p["assistant_suffix"]
        + p["user_prefix"]
        + _U2
        + p["user_suffix"]
        + p["generation"]
    )
    if rebuilt != full or not p["head"].endswith(p["user_prefix"]):
        raise TemplateTranslationError(
            "the chat template renders turns differently by "
            "position; write the Modelfile's TEMPLATE by hand"
        )
    try:
        sys_text = _render(tok, [{"role": "system", "content": _S}, user1], False)
        p["system_prefix"] = sys_text.split(_S)[0]
        between = sys_text.split(_S, 1)[1].split(_U1)[0]
        if not between.endswith(p["user_prefix"]):
            raise TemplateTranslationError(
                "the chat template's system turn does not decompose into fixed pieces"
            )
        p["system_suffix"] = between[: len(between) - len(p["user_prefix"])]
    except TemplateTranslationError:
        raise
    except Exception:  # a template without a system role (Mistral's) refuses it
        p["system_prefix"] = p["system_suffix"] = None
    return p


def go_template(p: dict, bos: str | None) -> tuple[str, str | None]:
    """The Ollama TEMPLATE for the pieces, and the default system prompt the Jinja
    template inserts when a conversation has none (for the SYSTEM line). ``bos``: the
    BOS text to drop from the front when llama.cpp adds BOS itself."""
    head = p["head"]
    if bos and head.startswith(bos):
        head = head[len(bos) :]  # llama.cpp adds BOS itself (tokenizer.ggml.add_bos_token)
    default_system, const = None, ""
    lead = head[: len(head) - len(p["user_prefix"])]  # before the first turn, no system
    sp, ss = p["system_prefix"], p["system_suffix"]
    if sp is not None and bos and sp.startswith(bos):
        sp = sp[len(bos) :]
    if (
        lead
        and sp is not None
        and lead.startswith(sp)
        and lead.endswith(ss)
        and len(lead) >= len(sp) + len(ss)
    ):
        default_system = lead[len(sp) : len(lead) - len(ss)]  # the template's default
    elif sp is None or sp.startswith(lead):
        const, sp = lead, (sp[len(lead) :] if sp is not None else None)  # e.g. BOS text
    else:
        raise TemplateTranslationError(
            "the chat template puts fixed text before the first "
            "turn that is neither a system prompt nor a prefix"
        )
    # Plain {{ }} actions only: Go's {{- would also trim the template's own newlines.
    system = _go(const) + (
        "{{ if .System }}" + _go(sp) + "{{ .System }}" + _go(ss) + "{{ end }}"
        if sp is not None
        else ""
    )
    body = (
        '{{ range .Messages }}{{ if eq .Role "user" }}'
        + _go(p["user_prefix"])
        + "{{ .Content }}"
        + _go(p["user_suffix"])
        + '{{ else if eq .Role "assistant" }}'
        + _go(p["assistant_prefix"])
        + "{{ .Content }}"
        + _go(p["assistant_suffix"])
        + "{{ end }}{{ end }}"
        + _go(p["generation"])
    )
    return system + body, default_system


def _go(text: str) -> str:
    """Literal text inside a Go template (``{{`` would start an action)."""
    return text.replace("{{", '{{ "{{" }}')


def modelfile(gguf_name: str, tok, chat: bool, stops: list[str]) -> str:
    """The Modelfile text for a GGUF named ``gguf_name`` beside it."""
    if chat:
        template, system = go_template(chat_pieces(tok), tok.bos_token if adds_bos(tok) else None)
    else:  # the Alpaca prompt of instruction-tuned runs
        template = PROMPT_NO_INPUT.replace("{instruction}", "{{ .Prompt }}")
        system = None
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"
