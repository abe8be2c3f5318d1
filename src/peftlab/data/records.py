"""Record formats: Alpaca instructions, OpenAI-style ``messages`` and ShareGPT
``conversations``; detection from the records and validation into one clean shape.

Clean records are either instructions ``{instruction, input, output, exact}`` or
conversations ``{messages: [{role, content}, ...], exact}`` with roles ``system``,
``user`` and ``assistant`` (ShareGPT's ``human``/``gpt`` mapped onto them). ``exact``
marks a record whose (final) answer can be checked by string comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMATS = ("alpaca", "messages", "sharegpt")
CONVERSATION_FORMATS = ("messages", "sharegpt")
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
}
# The field that identifies each format, in the order detection tries them.
_KEY_OF = {"messages": "messages", "sharegpt": "conversations", "alpaca": "instruction"}


INDEX = "_index"
"""Key of a clean record holding its index in the file it came from."""


class BadRecordError(ValueError):
    """A dataset record is malformed; the message names the file and the index."""


def detect_format(records: list[Any], where: str) -> str:
    """The format of a dataset from its first record: ``messages`` (a ``messages`` list),
    ``sharegpt`` (a ``conversations`` list) or ``alpaca`` (an ``instruction``)."""
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None:
        raise BadRecordError(
            f"{where}: no record is a JSON object, cannot tell the format "
            f"(expected one of {', '.join(FORMATS)})"
        )
    for fmt, key in _KEY_OF.items():
        if key in first:
            return fmt
    keys = ", ".join(sorted(map(str, first))[:8]) or "none"
    raise BadRecordError(
        f"{where}: cannot tell the data format from the first record (its keys: {keys}); "
        "expected 'instruction'/'output' (alpaca), 'messages' (OpenAI chat) or "
        "'conversations' (ShareGPT); force one with --data-format"
    )


def check_record(rec: Any, where: str, index: int, fmt: str = "alpaca") -> dict:
    """A clean record in ``fmt`` or a BadRecordError naming ``where`` and ``index``."""
    if fmt == "alpaca":
        return check_alpaca(rec, where, index)
    if fmt in CONVERSATION_FORMATS:
        return check_conversation(rec, where, index, fmt)
    raise ValueError(f"unknown data format {fmt!r}; expected one of {', '.join(FORMATS)}")


def check_records(
    raw: Iterable[Any], where: str, skip_bad: bool, fmt: str = "alpaca"
) -> tuple[list[dict], int]:
    good, skipped = [], 0
    for i, rec in enumerate(raw):
        try:
            clean = check_record(rec, where, i, fmt)
            clean[INDEX] = i  # errors found later (the chat template's) name this index
            good.append(clean)
        except BadRecordError as e:
            if not skip_bad:
                raise BadRecordError(f"{e} (use --skip-bad-records to skip such records)") from None
            skipped += 1
            if skipped <= 3:
                import sys

                print(f"skipping {e}", file=sys.stderr)
    return good, skipped


def _bad(where: str, index: int, why: str) -> BadRecordError:
    return BadRecordError(f"{where}: record {index}: {why}")


def _exact(rec: dict, where: str, index: int) -> bool:
    exact = rec.get("exact", False)
    if not isinstance(exact, bool):
        raise _bad(where, index, f"field 'exact' must be true or false, got {exact!r}")
    return exact


def check_alpaca(rec: Any, where: str, index: int) -> dict:
    """``input`` may be missing or null (many Alpaca-style sets omit it) but must be a
    string when present; ``instruction`` and ``output`` must be non-empty strings."""
    if not isinstance(rec, dict):
        raise _bad(
            where,
            index,
            f"expected an object with instruction/input/output, got {type(rec).__name__}",
        )
    for key in ("instruction", "output"):
        if key not in rec:
            raise _bad(where, index, f"field {key!r} is missing")
        if not isinstance(rec[key], str):
            raise _bad(
                where, index, f"field {key!r} must be a string, got {type(rec[key]).__name__}"
            )
        if not rec[key].strip():
            raise _bad(where, index, f"field {key!r} is empty")
    inp = rec.get("input", "")
    if inp is None:
        inp = ""
    if not isinstance(inp, str):
        raise _bad(where, index, f"field 'input' must be a string, got {type(inp).__name__}")
    return {
        "instruction": rec["instruction"],
        "input": inp,
        "output": rec["output"],
        "exact": _exact(rec, where, index),
    }


def check_conversation(rec: Any, where: str, index: int, fmt: str, to_train: bool = True) -> dict:
    """A ``messages`` (role/content) or ShareGPT ``conversations`` (from/value) record as
    ``{messages, exact}``: known roles, non-empty string contents, a system turn only
    first, at least one assistant turn; an ``exact`` record must end with the answer."""
    field, role_key, text_key = (
        ("messages", "role", "content") if fmt == "messages" else ("conversations", "from", "value")
    )
    roles = {r: r for r in ROLES} if fmt == "messages" else SHAREGPT_ROLES
    if not isinstance(rec, dict):
        raise _bad(
            where, index, f"expected an object with a {field!r} list, got {type(rec).__name__}"
        )
    turns = rec.get(field)
    if turns is None:
        raise _bad(where, index, f"field {field!r} is missing")
    if not isinstance(turns, list):
        raise _bad(
            where, index, f"field {field!r} must be a list of turns, got {type(turns).__name__}"
        )
    if not turns:
        raise _bad(where, index, f"field {field!r} is empty")
    messages = []
    for t, turn in enumerate(turns):

        def bad(why: str) -> BadRecordError:
            return _bad(where, index, f"turn {t}: {why}")

        if not isinstance(turn, dict):
            raise bad(
                f"expected an object with {role_key!r} and {text_key!r}, got {type(turn).__name__}"
            )
        for key in (role_key, text_key):
            if key not in turn:
                raise bad(f"field {key!r} is missing")
        role, content = turn[role_key], turn[text_key]
        if not isinstance(role, str) or role not in roles:
            raise bad(f"unknown role {role!r}; expected one of {', '.join(roles)}")
        if not isinstance(content, str):
            raise bad(f"{text_key!r} must be a string, got {type(content).__name__}")
        if not content.strip():
            raise bad(f"{text_key!r} is empty")
        if roles[role] == "system" and t > 0:
            raise bad("a system turn is allowed only as the first turn")
        if roles[role] == "assistant" and (not messages or messages[-1]["role"] != "user"):
            before = messages[-1]["role"] if messages else "nothing"
            raise bad(f"an assistant turn must answer a user turn, but follows {before}")
        messages.append({"role": roles[role], "content": content})
    if to_train and not any(m["role"] == "assistant" for m in messages):
        raise _bad(where, index, "the conversation has no assistant turn (nothing to learn)")
    exact = _exact(rec, where, index)
    if exact and messages[-1]["role"] != "assistant":
        raise _bad(where, index, "an exact record must end with the assistant's answer")
    return {"messages": messages, "exact": exact}


def is_conversation(rec: dict) -> bool:
    return "messages" in rec


def as_conversation(rec: dict) -> list[dict]:
    """The record's turns; an instruction becomes one user turn (instruction, then its
    input after a blank line) and one assistant turn."""
    if is_conversation(rec):
        return rec["messages"]
    user = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"].strip() else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": rec["output"]}]
