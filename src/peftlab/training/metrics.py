"""``metrics.jsonl``: the per-step log of a run, kept consistent across resumes."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.atomic import atomic_write_bytes


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended and flushed as it goes."""

    def __init__(self, path: Path, resume_step: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled  # only the main process writes
        self.sink = None
        """Called with every record written (the run's experiment trackers)."""
        if not enabled:
            pass
        elif resume_step is None:
            atomic_write_bytes(path, b"")
        else:  # drop lines logged after the checkpoint we resume from
            keep = [r for r in self.records() if r.get("step", 0) <= resume_step]
            atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode())

    def records(self) -> list[dict]:
        """The logged records; a line cut short by a kill is skipped, not fatal."""
        out = []
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        for ln in lines:
            try:
                out.append(json.loads(ln))
            except json.JSONDecodeError:
                continue
        return out

    def first_eval(self) -> dict | None:
        """The step-0 evaluation logged before training (kept across a resume)."""
        for rec in self.records():
            if rec.get("step") == 0 and "eval_loss" in rec:
                return {k: v for k, v in rec.items() if k != "step"}
        return None

    def write(self, **record) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.sink is not None:
            self.sink(record)


def scalars(evaluation: dict) -> dict:
    """An evaluation's single figures (per-record lists and samples stay in results)."""
    return {k: v for k, v in evaluation.items() if not isinstance(v, (list, dict))}
