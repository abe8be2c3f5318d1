"""The planner's side of the device-aware defaults (``training/defaults.py``): a run's
predicted peak for a token budget and loss chunk, and the defaults it resolves to on a
GPU with a given free memory."""

from __future__ import annotations

import copy

from ..training.defaults import Defaults, gpu_options, resolve_defaults
from .estimate import LOGIT_BYTES_TRAIN
from .planner import FIT_MARGIN, _model, data_shape, estimate_run


class RunPlan:
    """:class:`peftlab.training.defaults.PlanView` of one run configuration; ``data``:
    the run's records (None: every record at ``max_length``, the worst case)."""

    def __init__(self, cfg, data, device: str):
        self.cfg, self.data, self.device = cfg, data, device
        self.full_tokens = cfg.train.batch_size * cfg.data.max_length
        self.logit_bytes = _model(cfg)[1].vocab * LOGIT_BYTES_TRAIN

    def peak(self, token_budget: int, loss_chunk: int) -> int:
        trial = copy.deepcopy(self.cfg)
        trial.train.token_budget, trial.train.loss_chunk = token_budget, loss_chunk
        return estimate_run(trial, self.data, self.device, with_time=False).peak


def run_defaults(cfg, device: str, free: int) -> Defaults:
    """The defaults of ``cfg`` on ``device`` with ``free`` bytes free (before the model
    loads). A setting fits when its prediction, with the caching allocator's headroom,
    stays within the planner's margin of ``free``. Every record at ``max_length`` is tried
    first (no tokenising); the run's own records only when that worst case needs cutting."""
    from .cli import CUDA_RESERVE

    t, margin = cfg.train, FIT_MARGIN / CUDA_RESERVE
    worst = resolve_defaults(
        device, free, RunPlan(cfg, None, device), t.token_budget, t.loss_chunk, margin
    )
    fastest = gpu_options(0, 0, t.token_budget, t.loss_chunk)[0]
    if device != "cuda" or (worst.token_budget, worst.loss_chunk) == fastest:
        return worst
    try:
        data = data_shape(cfg)
    except (OSError, ValueError):
        data = None  # the run itself will report a bad dataset
    if data is None:
        return worst
    return resolve_defaults(
        device, free, RunPlan(cfg, data, device), t.token_budget, t.loss_chunk, margin
    )
