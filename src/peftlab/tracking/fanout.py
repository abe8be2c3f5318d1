"""The one seam between training and the trackers: :class:`Trackers` receives every
record ``metrics.jsonl`` receives (the loop knows no tracker), names its figures
(``train/loss``, ``eval/perplexity``) and hands them to each backend; a backend that fails
is reported once and dropped, so a tracker never costs the run.

Only the main process tracks (the others get an empty fan-out). A resumed run continues
the same tracked run: its ids wait in the run directory's ``tracking.json``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

from ..core.atomic import atomic_write_json
from .base import Backend, TrackContext
from .mlflow import MlflowBackend
from .mlflow import log_comparison as mlflow_comparison
from .tensorboard import TensorBoardBackend
from .trackio import TrackioBackend
from .trackio import log_comparison as trackio_comparison
from .wandb import WandbBackend
from .wandb import log_comparison as wandb_comparison

# Trainer's ``report_to`` names; each backend imports its library only when it starts.
BACKENDS: dict[str, type[Backend]] = {
    "tensorboard": TensorBoardBackend,
    "mlflow": MlflowBackend,
    "trackio": TrackioBackend,
    "wandb": WandbBackend,
}
STATE_FILE = "tracking.json"
# How each tracker holds a comparison's report: MLflow as the parent run of the methods'
# runs; W&B and Trackio as a run of its own beside them (TensorBoard: the runs only).
_COMPARISONS = {
    "mlflow": mlflow_comparison,
    "wandb": wandb_comparison,
    "trackio": trackio_comparison,
}
# metrics.jsonl keys that are not figures over steps.
_NOT_FIGURES = {"step", "epoch"}
# Renamed for the trackers (Trainer's names); others keep their metrics.jsonl key.
_RENAME = {"lr": "learning_rate", "eval_loss": "loss"}


def parse_report_to(value: str | list | None) -> list[str]:
    """``tensorboard,mlflow`` -> the names; ``none`` or empty -> []. Unknown: an error."""
    names = value if isinstance(value, list) else str(value or "none").split(",")
    names = [n.strip().lower() for n in names if n.strip()]
    if names == ["none"]:
        return []
    for n in names:
        if n not in BACKENDS:
            known = ", ".join([*BACKENDS, "none"])
            raise ValueError(f"option report_to: unknown tracker {n!r} (known: {known})")
    return list(dict.fromkeys(names))


def check_report_to(value) -> list[str]:
    """The trackers asked for, each with its library installed, or a one-line error
    naming the install command (called before any model loads)."""
    names = parse_report_to(value)
    for n in names:
        if importlib.util.find_spec(BACKENDS[n].package) is None:
            raise ModuleNotFoundError(
                f"--report-to {n} needs the {BACKENDS[n].package} package: "
                f"pip install 'peftlab[{n}]'"
            )
    return names


class Trackers:
    """The fan-out: every backend, each call guarded."""

    def __init__(self, backends: list[Backend], out: Path | None = None):
        self.backends, self.out = list(backends), out
        self._save_state()

    def record(self, rec: dict) -> None:
        """One ``metrics.jsonl`` record: a training step's or an evaluation's figures."""
        if not self.backends or "step" not in rec:
            return
        group = "eval" if "eval_loss" in rec else "train"
        figures = {
            f"{group}/{_RENAME.get(k, k)}": float(v)
            for k, v in rec.items()
            if k not in _NOT_FIGURES and _is_number(v)
        }
        self._each("log metrics", lambda b: b.log_metrics(int(rec["step"]), figures))

    def finish(self, results: dict, step: int, artifacts: list[Path]) -> None:
        """The run's final figures (trainable share, peak memory, times) and its files."""
        final = {
            "final/trainable_share_pct": (results.get("params") or {}).get("share_pct"),
            "final/peak_memory_bytes": results.get("peak_memory_bytes"),
            "final/train_seconds": results.get("train_seconds"),
            "final/tokens_per_s": results.get("tokens_per_s"),
            "final/adapter_bytes": results.get("adapter_bytes"),
        }
        final = {k: float(v) for k, v in final.items() if _is_number(v)}
        self._each("log final results", lambda b: b.log_metrics(step, final))
        files = [p for p in artifacts if p.is_file()]
        self._each("log artifacts", lambda b: b.log_artifacts(files))

    def close(self, ok: bool) -> None:
        self._each("close", lambda b: b.close(ok))
        self.backends = []

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    def _each(self, what: str, call) -> None:
        for b in list(self.backends):
            try:
                call(b)
            except Exception as e:  # a tracker's failure is never the run's
                self.backends.remove(b)
                print(
                    f"peftlab: warning: tracker {b.name} failed to {what} "
                    f"({type(e).__name__}: {str(e)[:200]}); it is off for the rest of the run",
                    file=sys.stderr,
                    flush=True,
                )

    def _save_state(self) -> None:
        if self.out is not None and self.backends:
            atomic_write_json(self.out / STATE_FILE, {b.name: b.state() for b in self.backends})


def open_trackers(names: list[str], ctx: TrackContext) -> Trackers:
    """Start (or, resuming, reopen) a tracked run in each backend named."""
    saved = _read_state(ctx.out / STATE_FILE) if ctx.resume_step is not None else {}
    backends = []
    for n in names:
        ctx.state = saved.get(n, {})
        try:
            backends.append(BACKENDS[n](ctx))
        except Exception as e:
            print(
                f"peftlab: warning: tracker {n} could not start ({type(e).__name__}: "
                f"{str(e)[:200]}); training goes on without it",
                file=sys.stderr,
                flush=True,
            )
    return Trackers(backends, ctx.out)


def plan_comparison(out: Path, report_to, experiment: str) -> None:
    """Record in a comparison's directory which trackers and experiment its runs use, so
    that writing its report (:func:`track_comparison`) logs the report there too."""
    state = _read_state(out / STATE_FILE)
    state.update(report_to=parse_report_to(report_to), experiment=experiment)
    atomic_write_json(out / STATE_FILE, state)


def track_comparison(out: Path, files: list[Path]) -> None:
    """The comparison in ``out`` as a parent run of its methods' runs, with ``files`` (the
    report) as its artifacts, in each tracker that holds comparisons; a failure is a
    warning. Nothing when the comparison is not tracked."""
    state = _read_state(out / STATE_FILE)
    runs = [_read_state(p) for p in sorted(out.glob(f"runs/*/{STATE_FILE}"))]
    for n in state.get("report_to") or []:
        if n not in _COMPARISONS:
            continue
        try:
            saved = _COMPARISONS[n](
                state.get(n, {}),
                state["experiment"],
                out.resolve().name,
                [f for f in files if f.is_file()],
                [r.get(n, {}) for r in runs],
            )
        except Exception as e:  # the report is written; only its tracking failed
            print(
                f"peftlab: warning: tracker {n} could not log the comparison "
                f"({type(e).__name__}: {str(e)[:200]})",
                file=sys.stderr,
                flush=True,
            )
            continue
        state[n] = saved
        atomic_write_json(out / STATE_FILE, state)


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested configuration as ``section.key`` -> text (trackers' parameters)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else str(v)
    return out


def _read_state(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
