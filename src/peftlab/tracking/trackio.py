"""Trackio: a local-first tracker (its SQLite store under ``TRACKIO_DIR``, by default
Hugging Face's cache; ``TRACKIO_SPACE_ID`` / ``TRACKIO_SERVER_URL`` as Trackio reads
them). ``--experiment`` names the project (else ``TRACKIO_PROJECT``, else ``peftlab``)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from .base import Backend, TrackContext


class TrackioBackend(Backend):
    """A resumed run reopens the run of the same name (``resume="must"``) and skips every
    step the interrupted part logged already, so no step shows twice."""

    name = "trackio"
    package = "trackio"

    def __init__(self, ctx: TrackContext):
        import trackio

        self.project = ctx.experiment or os.environ.get("TRACKIO_PROJECT") or "peftlab"
        self.run_name = ctx.state.get("run_name") or ctx.run_name
        resumed = ctx.resume_step is not None and "run_name" in ctx.state
        with _quiet():  # Trackio's banner would mix into peftlab's stdout
            self.run = trackio.init(
                project=self.project,
                name=self.run_name,
                config=dict(ctx.params),  # a resumed run given none would keep none
                resume="must" if resumed else "never",
                embed=False,
                auto_log_cpu=False,
                auto_log_gpu=False,
            )
        self.last = self._last_step() if resumed else -1

    def _last_step(self) -> int:
        from trackio.sqlite_storage import SQLiteStorage

        last = SQLiteStorage.get_max_step_for_run(self.project, self.run_name)
        return -1 if last is None else last

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        # The final figures come at the last training step, logged already on a resume.
        fresh = {k: v for k, v in metrics.items() if step > self.last or k.startswith("final/")}
        if fresh:
            self.run.log(fresh, step=step)

    def log_artifacts(self, paths: list[Path]) -> None:
        from trackio import Artifact

        art = Artifact(name=re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.run_name}-run"), type="model")
        for p in paths:
            art.add_file(p)
        self.run.log_artifact(art)

    def state(self) -> dict:
        return {"project": self.project, "run_name": self.run_name}

    def close(self, ok: bool) -> None:
        with _quiet():
            self.run.finish()


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(sys.stderr):
        yield


def log_comparison(saved: dict, experiment: str, name: str, files: list[Path], runs: list[dict]):
    """A comparison's own run (``<name>-comparison``) in the project of its methods'
    runs, with the report's files as an artifact. Returns its state."""
    import trackio

    with _quiet():
        run = trackio.init(
            project=experiment,
            name=f"{name}-comparison",
            resume="allow",
            embed=False,
            auto_log_cpu=False,
            auto_log_gpu=False,
        )
        art = trackio.Artifact(
            name=re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-report"), type="report"
        )
        for f in files:
            art.add_file(f)
        run.log_artifact(art, overwrite=True)
        run.finish()
    return {"run_name": f"{name}-comparison"}
