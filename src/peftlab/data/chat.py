"""Conversations rendered with the model's own chat template, and their loss mask.

Which tokens are the assistant's is derived from the rendering itself, never by
searching for marker strings: for every assistant turn ``i`` the template renders

- ``before``: turns ``< i`` with the generation prompt (where the answer starts), and
- ``after``: turns ``<= i`` (the answer, its end-of-turn token, the template's glue),

and each must be a prefix of the whole conversation's rendering. The assistant span is
the characters from ``before`` to ``after`` without trailing whitespace (the content
plus the end-of-turn/EOS token the template puts after it, exactly what a server
applying the same template expects the model to produce), mapped onto the tokens of the
whole rendering through the tokenizer's offsets. A template that breaks the prefix
property (it renders history differently from the last turn, say) stops with an error
naming the template and the turn.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from .batching import Encoded, Example
from .records import INDEX, BadRecordError, as_conversation

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML (OpenAI's chat markup, used by Qwen, SmolLM2 and many others)."""

BUILTIN_TEMPLATES = {"chatml": CHATML}
TRAIN_ON = ("all-assistant", "last-assistant", "all")


class ChatTemplateError(ValueError):
    """A chat template cannot be used to build an exact loss mask."""


def resolve_template(spec: str) -> str:
    """A built-in template's text (``chatml``) or a Jinja file's."""
    if spec in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[spec]
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ChatTemplateError(f"chat template file {path}: cannot read it ({e})") from None
    raise ChatTemplateError(
        f"chat template {spec!r}: neither a built-in template "
        f"({', '.join(BUILTIN_TEMPLATES)}) nor an existing Jinja file"
    )


def set_template(tokenizer, spec: str | None) -> str | None:
    """Give the tokenizer the template ``spec`` names (it then travels with every saved
    tokenizer: merged models carry it); None keeps the model's own. Returns the name."""
    if spec:
        tokenizer.chat_template = resolve_template(spec)
        label = spec if len(spec) < 200 and "{" not in spec else "given as text"
        tokenizer.peftlab_template = label  # errors name the template (template_label)
        return spec
    return "model's own" if tokenizer.chat_template else None


def require_template(tokenizer, model_id: str = "the model") -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"{model_id} has no chat template; give one with --chat-template "
            f"({', '.join(BUILTIN_TEMPLATES)} or a Jinja file), or use --prompt-format alpaca"
        )


RENDER_SECONDS = 5.0
"""Longest one rendering may take: real templates render a conversation in
milliseconds; one that loops (``range(100000)`` nested) is stopped, not waited for."""
RENDER_CHARS = 1 << 24
"""Longest text one rendering may produce (16 Mi characters, far beyond any context)."""


class TemplateLimitError(ChatTemplateError):
    """A template ran too long or wrote too much (the template's fault, not a record's)."""


class _TooSlow(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_TooSlow` inside the block after ``seconds`` (a SIGALRM timer, so the
    main thread only; elsewhere no limit). Jinja templates compile to Python code, which
    the signal interrupts between any two bytecodes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _TooSlow

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def template_label(tokenizer) -> str:
    """The template by name: the one given (built-in name or file), or the model's."""
    given = getattr(tokenizer, "peftlab_template", None)
    if given:
        return f"chat template {given!r}"
    return f"the chat template of {getattr(tokenizer, 'name_or_path', None) or 'the model'}"


def render(
    tokenizer,
    messages: list[dict],
    add_generation_prompt: bool = False,
    where: str = "conversation",
) -> str:
    """The template's text for ``messages``; a template's own refusal (``raise_exception``,
    e.g. roles that do not alternate) becomes an error naming ``where`` and the turn. A
    template that runs too long or writes too much stops with an error naming it."""
    try:
        return _apply(tokenizer, messages, add_generation_prompt)
    except ChatTemplateError:
        raise
    except Exception as e:  # jinja2's TemplateError and whatever a template raises
        turn = next(
            (k for k in range(1, len(messages) + 1) if _refuses(tokenizer, messages[:k])),
            len(messages),
        )
        raise BadRecordError(
            f"{where}: turn {turn - 1}: the chat template refuses it: {type(e).__name__}: {e}"
        ) from None


def _apply(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    try:
        with _time_limit(RENDER_SECONDS):
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
    except _TooSlow:
        raise TemplateLimitError(
            f"{template_label(tokenizer)}: rendering a conversation of {len(messages)} "
            f"turn(s) took more than {RENDER_SECONDS:g} s (does it loop?); fix it or give "
            "another with --chat-template"
        ) from None
    if len(text) > RENDER_CHARS:
        raise TemplateLimitError(
            f"{template_label(tokenizer)}: rendering a conversation of {len(messages)} "
            f"turn(s) wrote {len(text):,} characters (more than {RENDER_CHARS:,}); fix it or "
            "give another with --chat-template"
        )
    return text


def _refuses(tokenizer, messages: list[dict]) -> bool:
    try:
        _apply(tokenizer, messages)
        return False
    except ChatTemplateError:
        raise
    except Exception:
        return True


def assistant_spans(
    tokenizer,
    messages: list[dict],
    where: str = "conversation",
    template_name: str = "chat template",
) -> tuple[list[int], list[tuple[int, int]]]:
    """The conversation's token ids and one ``(start, end)`` token span per assistant turn
    (content + end-of-turn token), derived from prefix renderings (see the module doc)."""
    full = render(tokenizer, messages, where=where)
    chars = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True, where=where)
        after = render(tokenizer, messages[: i + 1], where=where).rstrip()
        for text, what in ((before, "the prompt before it"), (after, "the turn itself")):
            if not full.startswith(text):
                raise ChatTemplateError(
                    f"{where}: {template_name} renders assistant turn {i} differently "
                    f"inside the conversation than as {what} alone (the prefix property "
                    "that an exact loss mask needs does not hold); use another template"
                )
        if len(after) <= len(before):
            raise ChatTemplateError(f"{where}: assistant turn {i} renders to no text")
        chars.append((i, len(before), len(after)))
    # Templates write special tokens (BOS too) as text: add none on top, as
    # apply_chat_template(tokenize=True) does.
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    spans = []
    for i, c0, c1 in chars:
        # Every token holding a character of the turn (a token that straddles the
        # boundary carries part of the answer, so it is learned).
        inside = [k for k, (a, b) in enumerate(offsets) if a < c1 and b > c0 and b > a]
        if not inside:
            raise ChatTemplateError(f"{where}: assistant turn {i} covers no token")
        spans.append((inside[0], inside[-1] + 1))
    return ids, spans


def target_mask(n: int, spans: list[tuple[int, int]], train_on: str) -> list[bool]:
    """Per-position loss flags: every assistant span, only the last, or every token."""
    if train_on == "all":
        return [True] * n
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
    mask = [False] * n
    for start, end in spans[-1:] if train_on == "last-assistant" else spans:
        mask[start:end] = [True] * (end - start)
    return mask


def encode_chat(
    tokenizer,
    records: list[dict],
    max_length: int,
    train_on: str,
    where: str = "dataset",
    template_name: str = "chat template",
    skip_bad: bool = False,
) -> Encoded:
    """Tokenise conversations (or instructions as one-turn conversations) with their
    assistant masks; truncate from the end and count what was cut or left untrainable."""
    out = Encoded([], [])  # dropped: every target token lies beyond max_length
    for index, rec in enumerate(records):
        try:
            ids, spans = assistant_spans(
                tokenizer,
                as_conversation(rec),
                f"{where}: record {rec.get(INDEX, index)}",  # the file's own index
                template_name,
            )
        except (BadRecordError, ChatTemplateError) as e:
            if isinstance(e, TemplateLimitError):
                raise  # the template itself is at fault, not this record
            if not skip_bad:
                raise type(e)(f"{e} (use --skip-bad-records to skip such records)") from None
            out.bad += 1
            continue
        mask = target_mask(len(ids), spans, train_on)
        truncated = len(ids) > max_length
        ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask[1:]):  # position 0 has no preceding token to predict it
            out.dropped += 1
            continue
        out.truncated += truncated
        first = mask.index(True)
        out.examples.append(Example(ids, first, truncated, mask))
        out.records.append(rec)
    return out


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids a reply ends with under this template (ChatML's ``<|im_end|>``, Llama
    3's ``<|eot_id|>``, EOS): the last token of a probe conversation's assistant span,
    plus EOS. Generation stops at any of them."""
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ids, spans = assistant_spans(tokenizer, probe, "probe conversation")
    last = ids[spans[-1][1] - 1]
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    # A template with no end-of-turn token of its own ends the span with content.
    stops = [last] if last in special else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
        stops.append(tokenizer.eos_token_id)
    return stops
