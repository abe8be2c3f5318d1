"""Source data for the bundled chat dataset (see ../build_chat_dataset.py).

Every module in this package contributes the conversations of one category through
a ``records(rng)`` function that returns a list of dicts made with
:func:`_common.conv`.  Hand-written conversations carry ``origin="hand"``; those
built from small fact tables or templates carry ``origin="template"``.  The
``origin`` field is used for statistics only and is not written to the shipped
files.
"""

CATEGORY_MODULES = (
    "small_talk",
    "facts",
    "math_chat",
    "memory",
    "rewrite",
    "advice",
    "classify",
    "persona",
)
