"""Weights & Biases: one W&B run per training run, configured as W&B reads its
environment (``WANDB_MODE=offline``, ``WANDB_PROJECT``, ``WANDB_ENTITY``,
``WANDB_API_KEY``...); ``--experiment`` names the project (else ``WANDB_PROJECT``, else
``peftlab``), and the run's local files go under the run directory unless ``WANDB_DIR``
says otherwise."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import Backend, TrackContext


class WandbBackend(Backend):
    """A resumed run reopens the W&B run whose id ``tracking.json`` kept
    (``resume="allow"``) and skips the steps W&B already holds for it, so no step shows
    twice (offline, W&B knows none: the interrupted part's steps come again, and W&B's
    sync keeps one value per step)."""

    name = "wandb"
    package = "wandb"

    def __init__(self, ctx: TrackContext):
        import wandb

        run_id = ctx.state.get("run_id") if ctx.resume_step is not None else None
        self.run = wandb.init(
            project=ctx.experiment or os.environ.get("WANDB_PROJECT") or "peftlab",
            name=ctx.run_name,
            id=run_id,
            resume="allow" if run_id else None,
            config=None if run_id else dict(ctx.params),
            dir=os.environ.get("WANDB_DIR") or str(ctx.out),
            reinit="create_new",
        )
        self.last = (self.run.step - 1) if run_id else -1

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if step > self.last:
            self.run.log(metrics, step=step)
            self.last = step - 1  # later figures of the same step still go in
        elif any(k.startswith("final/") for k in metrics):
            self.run.summary.update(metrics)

    def log_artifacts(self, paths: list[Path]) -> None:
        import wandb

        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.run.name}-run")
        art = wandb.Artifact(name, type="model")
        for p in paths:
            art.add_file(str(p))
        self.run.log_artifact(art)

    def state(self) -> dict:
        return {"run_id": self.run.id}

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


def log_comparison(saved: dict, experiment: str, name: str, files: list[Path], runs: list[dict]):
    """A comparison's own W&B run (job type ``comparison``) in the project of its methods'
    runs, with the report's files as an artifact; a rerun reopens it. Returns its state."""
    import wandb

    run_id = saved.get("run_id")
    run = wandb.init(
        project=experiment,
        name=f"{name} (comparison)",
        id=run_id,
        resume="allow" if run_id else None,
        job_type="comparison",
        dir=os.environ.get("WANDB_DIR") or (str(files[0].parent) if files else None),
        reinit="create_new",
    )
    art = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-report"), type="report")
    for f in files:
        art.add_file(str(f))
    run.log_artifact(art)
    run.finish()
    return {"run_id": run.id}
