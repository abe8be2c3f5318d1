"""The prompt format of a run: Alpaca's prompt or the model's chat template, used alike
for training, evaluation (perplexity and exact match) and generation.

``auto`` chooses the chat template for conversation records and keeps the Alpaca prompt
for Alpaca records (the classic set-up); ``chat`` renders Alpaca records as one-turn
conversations too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .alpaca import encode, format_prompt
from .batching import Encoded
from .chat import (
    encode_chat,
    end_of_turn_ids,
    render,
    require_template,
    resolve_template,
    set_template,
)
from .records import CONVERSATION_FORMATS, as_conversation, is_conversation

PROMPT_FORMATS = ("auto", "alpaca", "chat")


@dataclass
class PromptFormat:
    kind: str
    """``alpaca`` or ``chat``."""
    tokenizer: Any
    train_on: str = "all-assistant"
    template: str | None = None
    """What the chat template is: a built-in name, "model's own", or its Jinja text."""
    _stops: list[int] | None = field(default=None, repr=False)

    @property
    def is_chat(self) -> bool:
        return self.kind == "chat"

    @property
    def add_special_tokens(self) -> bool:
        """Chat templates write their special tokens (BOS too) as text."""
        return not self.is_chat

    def encode(
        self, records: list[dict], max_length: int, where: str, skip_bad: bool = False
    ) -> Encoded:
        if self.is_chat:
            return encode_chat(
                self.tokenizer,
                records,
                max_length,
                self.train_on,
                where,
                self.template_label,
                skip_bad,
            )
        return encode(self.tokenizer, records, max_length)

    @property
    def template_label(self) -> str:
        t = self.template or "none"
        return f"chat template {t!r}" if len(t) < 40 else "the given chat template"

    def prompt(self, rec: dict) -> str:
        """The text a model continues to answer ``rec`` (its last turn left out)."""
        if self.is_chat:
            return self.conversation_prompt(as_conversation(rec)[:-1])
        return format_prompt(rec["instruction"], rec["input"])

    @staticmethod
    def answer(rec: dict) -> str:
        return rec["messages"][-1]["content"] if is_conversation(rec) else rec["output"]

    def user_prompt(self, text: str) -> str:
        """One user message, as this format asks it."""
        if self.is_chat:
            return self.conversation_prompt([{"role": "user", "content": text}])
        return format_prompt(text)

    def conversation_prompt(self, messages: list[dict]) -> str:
        return render(self.tokenizer, messages, add_generation_prompt=True)

    def stop_ids(self) -> list[int] | None:
        """Tokens that end a reply (the template's end-of-turn token and EOS); None: the
        model's own EOS. Derived once (a probe rendering), then reused every turn."""
        if self._stops is None and self.is_chat:
            self._stops = end_of_turn_ids(self.tokenizer)
        return self._stops

    def describe(self) -> dict:
        """For results and reports: the prompt format, the template (named, or "custom"
        for one given as text) and what the chat loss covers."""
        if not self.is_chat:
            return {"prompt_format": self.kind}
        name = self.template if self.template and len(self.template) < 40 else "custom"
        return {"prompt_format": self.kind, "chat_template": name, "train_on": self.train_on}


def template_spec_to_save(spec: str | None) -> str | None:
    """What config.yaml records for ``--chat-template``: a built-in name as is, a file as
    its text (so the run reloads it even when the file moves)."""
    if not spec:
        return spec
    return spec if _is_builtin_or_text(spec) else resolve_template(spec)


def _is_builtin_or_text(spec: str) -> bool:
    from .chat import BUILTIN_TEMPLATES

    return spec in BUILTIN_TEMPLATES or "{%" in spec or "{{" in spec


def make_prompt_format(
    tokenizer,
    prompt_format: str,
    data_format: str | None,
    chat_template: str | None,
    train_on: str,
    model_id: str = "the model",
) -> PromptFormat:
    """Resolve ``auto``, install ``chat_template`` on the tokenizer, check the pairing."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(
            f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}"
        )
    conversations = data_format in CONVERSATION_FORMATS
    kind = prompt_format if prompt_format != "auto" else ("chat" if conversations else "alpaca")
    if kind == "alpaca" and conversations:
        raise ValueError(
            f"the data are conversations ({data_format}): they can only be "
            "rendered with a chat template, not the Alpaca prompt; use "
            "--prompt-format chat (or auto)"
        )
    template = set_template(tokenizer, chat_template)
    if kind == "chat":
        require_template(tokenizer, model_id)
    return PromptFormat(kind, tokenizer, train_on, template)
