"""Helpers, shared system prompts and their style rules for the chat source modules."""

from __future__ import annotations

import re


def conv(
    turns, category: str, exact: bool, system: str | None = None, origin: str = "hand"
) -> dict:
    """One conversation from ``(user, assistant)`` pairs and an optional system prompt.

    ``origin`` is bookkeeping and is dropped on export.
    """
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    for user, assistant in turns:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    return {"messages": messages, "category": category, "exact": bool(exact), "origin": origin}


def cycle(options, i: int):
    """Pick ``options[i % len(options)]`` (deterministic phrasing variety)."""
    return options[i % len(options)]


# ------------------------------------------------------------ system prompts
# Prompts used by more than one module.  Each prompt in STYLE_RULES comes with a
# check that every assistant reply in a conversation using it must pass, so the
# prompt demonstrably shapes the answers (the build enforces it).
CONCISE = "You are a concise assistant. Answer in one short sentence."
BRIEF = "You are a friendly assistant. Keep every reply under ten words."
MATH_TUTOR = "You are a math tutor. Give only the final number when asked."
STEP_TUTOR = "You are a patient math tutor. Show each calculation step."
LIST_OF_THREE = (
    "You are a helpful coach. Give advice as a numbered list of exactly three short items."
)
EDITOR = "You are an editor. Reply with the rewritten text only, with no comments."
CLASSIFIER = (
    "You are a sentiment classifier. Reply with exactly one word: positive, negative or neutral."
)
ROBOT = "You are a robot assistant. Reply only in capital letters."
THREE_WORDS = "You always reply in exactly three words."
BUTLER = "You are Jenkins, a formal butler. Begin every reply with 'Certainly'."
PIRATE = "You are Captain Rosie, a cheerful pirate. Always talk like a pirate."
YES_NO = "You answer every question with only yes or no, in lower case."
COACH = (
    "You are Coach Kim, an upbeat fitness coach. Keep replies short and end every reply "
    "with 'You've got this!'"
)


def _one_sentence(text: str) -> bool:
    return (
        len(re.findall(r"[.!?](?:\s|$)", text)) == 1
        and text[-1] in ".!?"
        and len(text.split()) <= 20
    )


def _numbered_three(text: str) -> bool:
    return re.fullmatch(r"1\. [^\n]+\n2\. [^\n]+\n3\. [^\n]+", text) is not None


STYLE_RULES = {
    CONCISE: ("one short sentence", _one_sentence),
    BRIEF: ("under ten words", lambda t: len(t.split()) < 10),
    MATH_TUTOR: ("a bare number", lambda t: re.fullmatch(r"-?\d+", t) is not None),
    STEP_TUTOR: ("shows a calculation step", lambda t: " = " in t),
    LIST_OF_THREE: ("a numbered list of three", _numbered_three),
    CLASSIFIER: ("one label", lambda t: t in ("positive", "negative", "neutral")),
    ROBOT: ("capital letters", lambda t: t == t.upper() and any(c.isalpha() for c in t)),
    THREE_WORDS: ("exactly three words", lambda t: len(t.split()) == 3),
    BUTLER: ("starts with 'Certainly'", lambda t: t.startswith("Certainly")),
    PIRATE: ("pirate talk", lambda t: re.search(r"\b(Ahoy|Arr|matey|Aye)\b", t) is not None),
    YES_NO: ("yes or no", lambda t: t in ("yes", "no")),
    COACH: ("ends with the catchphrase", lambda t: t.endswith("You've got this!")),
    EDITOR: ("no preamble", lambda t: re.match(r"(Here|Sure|Okay|Of course)\b", t) is None),
}
