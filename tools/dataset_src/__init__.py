"""Source data for the bundled instruction dataset (see ../build_dataset.py).

Every module in this package contributes the records of one category through a
``records(rng)`` function that returns a list of dicts made with
:func:`_common.rec`.  Hand-written records carry ``origin="hand"``; records built
from small templates or fact tables carry ``origin="template"``.  The ``origin``
field is used for statistics only and is not written to the shipped files.
"""

CATEGORY_MODULES = (
    "rewrite",
    "classify",
    "extract",
    "summarize",
    "brainstorm",
    "explain",
    "open_qa",
    "math_gen",
)
