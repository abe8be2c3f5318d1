"""Experiment tracking (``--report-to``): one small class per tracker library, behind
one fan-out (:class:`Trackers`) that the training loop feeds through ``metrics.jsonl``'s
records. See :mod:`.fanout`."""

from .base import TrackContext
from .fanout import (
    BACKENDS,
    Trackers,
    check_report_to,
    flat_params,
    open_trackers,
    parse_report_to,
    plan_comparison,
    track_comparison,
)

__all__ = [
    "BACKENDS",
    "TrackContext",
    "Trackers",
    "check_report_to",
    "flat_params",
    "open_trackers",
    "parse_report_to",
    "plan_comparison",
    "track_comparison",
]
