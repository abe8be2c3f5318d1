"""TensorBoard: event files under ``<run>/tensorboard`` (torch's ``SummaryWriter``)."""

from __future__ import annotations

import yaml

from .base import Backend, TrackContext


class TensorBoardBackend(Backend):
    """A resumed run writes into the same log directory with ``purge_step`` set to the
    first step it takes again: TensorBoard's readers then drop the events the interrupted
    part logged from that step on, so no step shows twice."""

    name = "tensorboard"
    package = "tensorboard"

    def __init__(self, ctx: TrackContext):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = ctx.out / "tensorboard"
        purge = ctx.resume_step + 1 if ctx.resume_step is not None else None
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge, flush_secs=30)
        if ctx.resume_step is None:
            text = yaml.safe_dump(ctx.params, sort_keys=False)
            self.writer.add_text("config", f"```\n{text}```", global_step=0)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def close(self, ok: bool) -> None:
        self.writer.close()
