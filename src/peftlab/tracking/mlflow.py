"""MLflow: one run per training run, through ``MlflowClient`` (``MLFLOW_TRACKING_URI``,
``MLFLOW_EXPERIMENT_NAME`` as MLflow reads them; ``--experiment`` names the experiment)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .base import Backend, TrackContext

# MLflow's limit on one parameter's value (longer ones, a chat template's text, are cut).
_PARAM_CHARS = 6000
_BATCH = 100  # MLflow's limit on parameters per log_batch call


class MlflowBackend(Backend):
    """A resumed run reopens the run whose id ``tracking.json`` kept, and skips every
    (metric, step) the interrupted part logged already, so no step shows twice."""

    name = "mlflow"
    package = "mlflow"

    def __init__(self, ctx: TrackContext):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        self.run_id = ctx.state.get("run_id") if ctx.resume_step is not None else None
        self.logged: dict[str, int] = {}  # metric -> the last step already in the run
        if self.run_id:
            self.client.update_run(self.run_id, status="RUNNING")
            for key in self.client.get_run(self.run_id).data.metrics:
                history = self.client.get_metric_history(self.run_id, key)
                self.logged[key] = max(m.step for m in history)
            return
        run = self.client.create_run(
            self._experiment_id(ctx.experiment), run_name=ctx.run_name, tags={"peftlab": "1"}
        )
        self.run_id = run.info.run_id
        params = [Param(k, v[:_PARAM_CHARS]) for k, v in ctx.params.items()]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + _BATCH])

    def _experiment_id(self, name: str | None) -> str:
        """``--experiment``, else MLflow's variables (MLFLOW_EXPERIMENT_NAME or _ID), else
        its Default experiment (id 0)."""
        name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if name is None:
            return os.environ.get("MLFLOW_EXPERIMENT_ID", "0")
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [
            Metric(k, v, now, step) for k, v in metrics.items() if step > self.logged.get(k, -1)
        ]
        if fresh:
            self.client.log_batch(self.run_id, metrics=fresh)

    def log_artifacts(self, paths: list[Path]) -> None:
        for p in paths:
            self.client.log_artifact(self.run_id, str(p))

    def state(self) -> dict:
        return {"run_id": self.run_id}

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def log_comparison(saved: dict, experiment: str, name: str, files: list[Path], runs: list[dict]):
    """A comparison's parent run in ``experiment``: the report's files as artifacts, and
    every method's run (``runs``: their ``tracking.json`` states) nested under it. A rerun
    reuses the parent whose id ``saved`` holds. Returns the state to keep."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    parent = saved.get("parent_run_id")
    if not parent:
        found = client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else client.create_experiment(experiment)
        tags = {"peftlab": "1", "peftlab.kind": "comparison"}
        parent = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    for state in runs:
        if state.get("run_id"):
            client.set_tag(state["run_id"], "mlflow.parentRunId", parent)
    for f in files:
        client.log_artifact(parent, str(f))
    client.set_terminated(parent, "FINISHED")
    return {"parent_run_id": parent}
