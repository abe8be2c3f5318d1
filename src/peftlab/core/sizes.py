"""Memory sizes as people write them (``24GB``, ``3.5GiB``, ``512MiB``) and as we print
them. GB counts as GiB, as GPU memory is quoted (an "80GB" A100 holds 80 GiB)."""

from __future__ import annotations

GiB = 1 << 30
MAX_BYTES = 1 << 60
"""1 EiB: no machine's memory comes near; larger sizes (``1e999GiB``) are typing errors."""
_UNITS = (
    ("TIB", 1 << 40),
    ("GIB", 1 << 30),
    ("MIB", 1 << 20),
    ("KIB", 1 << 10),
    ("TB", 1 << 40),
    ("GB", 1 << 30),
    ("MB", 1 << 20),
    ("KB", 1 << 10),
    ("T", 1 << 40),
    ("G", 1 << 30),
    ("M", 1 << 20),
    ("K", 1 << 10),
    ("B", 1),
)


def parse_size(text: str | int | float) -> int:
    """``24GB``, ``80G``, ``3.5GiB``, ``512MiB`` or a number of bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if 0 < text <= MAX_BYTES:  # False for NaN and inf too
            return int(text)
    s = str(text).strip().upper().replace(" ", "")
    for unit, mult in _UNITS:
        if s.endswith(unit) and s[: -len(unit)]:
            s, scale = s[: -len(unit)], mult
            break
    else:
        scale = 1
    try:
        value = float(s) * scale
    except ValueError:
        value = 0.0
    if 0 < value <= MAX_BYTES:  # False for NaN and inf (1e999GiB) too
        return int(value)
    raise ValueError(
        f"memory size {text!r}: use a positive size up to 1 EiB such as 24GB, 3.5GiB, "
        f"512MiB, or a number of bytes"
    )


def describe_bytes(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= 0.1 * GiB else f"{n / (1 << 20):.0f} MiB"
