"""What every tracker backend is given and offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrackContext:
    """Where and as what a run is tracked."""

    out: Path
    """The run directory (TensorBoard's default log directory is under it)."""
    run_name: str
    experiment: str | None
    """None: the library's own default (its environment variables)."""
    params: dict[str, str]
    """The resolved configuration, flattened to ``section.key`` -> text."""
    resume_step: int | None
    """The checkpoint's step when resuming (None: a new run)."""
    state: dict = field(default_factory=dict)
    """What a backend stored in the run directory's ``tracking.json`` (its run id)."""


class Backend:
    """One tracker. Every method may raise: the fan-out turns a failure into a warning
    and stops calling the backend, so a tracker never costs the training run."""

    name = ""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        raise NotImplementedError

    def log_artifacts(self, paths: list[Path]) -> None:
        """Files of the finished run (the adapter, its card, results.json); default: none."""

    def state(self) -> dict:
        """What to keep in ``tracking.json`` so that a resume continues the same run."""
        return {}

    def close(self, ok: bool) -> None:
        """End the tracked run (``ok``: finished, else failed or interrupted)."""
