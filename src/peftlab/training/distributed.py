"""Several processes: data-parallel training on accelerate (DDP; FSDP2 on GPUs).

``accelerate launch --multi_gpu --num_processes N -m peftlab train ...`` (or ``peftlab
train --num-processes N``, which runs exactly that) starts N copies of the training
process. Every process builds the same global micro-batches (a pure function of the seed
and the epoch) and trains on its own contiguous rows of each; the loss of every process
is normalised by the target tokens of the *global* batch, so the gradient that DDP
averages equals one process's gradient on the whole batch (see ``train._step``). One
process per GPU; on CPU the processes talk over gloo and split the cores between them.

Only the main process (rank 0) writes files and prints; evaluation is sharded and its
sums reduced, so perplexity covers the eval set exactly once. Under FSDP2 (parameters
sharded, :attr:`Dist.sharded`) every forward is a collective, so every process runs
every evaluation and generation in step.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.runtime import pick_device

LAUNCH_FLAGS = (
    "--multi_gpu",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--main_process_port",
    "0",
)
"""What ``peftlab train --num-processes N`` passes to ``accelerate launch``.
``--multi_gpu`` is accelerate's switch for "start N processes with torch.distributed.run",
CPU-only machines included (without it accelerate starts one process, whatever
``--num_processes`` says); mixed precision is peftlab's own autocast, so accelerate's
stays off; port 0 picks a free port, so two runs on one machine do not collide."""


def launched_world_size() -> int:
    """Processes of the launch this process belongs to (1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def relaunch(num_processes: int, argv: list[str]) -> int:
    """Run ``peftlab <argv>`` in ``num_processes`` processes through accelerate's
    launcher; returns its exit status."""
    if launched_world_size() > 1:
        raise ValueError(
            "--num-processes: this process already belongs to a launch of "
            f"{launched_world_size()} processes; drop the option"
        )
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *LAUNCH_FLAGS,
        "--num_processes",
        str(num_processes),
        "-m",
        "peftlab",
        *argv,
    ]
    return subprocess.call(cmd)


@dataclass
class Dist:
    """This process's place among the training processes (one process: all defaults)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    sharded: bool = False
    """FSDP2: parameters are sharded, so every forward is a collective."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, n: int, rank: int | None = None) -> range:
        """This process's (or ``rank``'s) contiguous share of ``n`` rows (sizes differ by
        at most one; empty when ``n`` is smaller than the number of processes)."""
        rank = self.rank if rank is None else rank
        base, extra = divmod(n, self.world)
        start = rank * base + min(rank, extra)
        return range(start, start + base + (rank < extra))

    def shard(self, items: Sequence) -> list:
        """Every ``world``-th item, from this rank's."""
        return list(items[self.rank :: self.world])

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over all processes (float64)."""
        if self.world == 1:
            return [float(v) for v in values]
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def mean(self, t: torch.Tensor) -> list[float]:
        """Element-wise means over all processes of ``t`` (on the device), read at once."""
        if self.world > 1:
            t = t.clone()
            torch.distributed.all_reduce(t)
            t /= self.world
        return t.tolist()

    def gather(self, obj: Any) -> list:
        """``obj`` of every process, by rank (small Python objects only)."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def check_same(self, what: str, values: list[float]) -> None:
        """Stop if the processes disagree on ``values`` (bit for bit): with gradients
        averaged before every update, their weights and method state never differ."""
        seen = self.gather(values)
        if any(v != seen[0] for v in seen):
            raise RuntimeError(
                f"the {self.world} training processes disagree on {what} "
                f"(fingerprints by rank: {seen}); was a gradient left out "
                "of the all-reduce?"
            )

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def start(device_name: str):
    """The Accelerator, this process's :class:`Dist` and its device.

    Call before loading the model: with several processes each takes the GPU of its
    local rank (or, on CPU, its share of the cores) and the process group is set up.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    world = launched_world_size()
    wanted = pick_device(device_name)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if world > 1 and wanted.type == "cuda":
        if wanted.index is not None:
            raise ValueError(
                f"device {device_name!r}: with {world} processes each one "
                "takes the GPU of its local rank; use device auto or cuda"
            )
        if torch.cuda.device_count() < local:
            raise ValueError(
                f"{local} processes on this machine but "
                f"{torch.cuda.device_count()} GPU(s): start one process per "
                "GPU, or train on CPU with --device cpu"
            )
    # broadcast_buffers=False: the frozen buffers (rotary tables, QLoRA's packed 4-bit
    # weights) are the same everywhere; re-sending them before every forward is waste.
    # (torch 2.13 renames it forward_sync_buffers, which accelerate cannot pass yet.)
    warnings.filterwarnings(
        "ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning
    )
    acc = Accelerator(
        cpu=wanted.type == "cpu",
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
    )
    if acc.num_processes != world:
        raise RuntimeError(
            f"launched as {world} processes but accelerate set up {acc.num_processes}"
        )
    device = acc.device if world > 1 and wanted.type == "cuda" else wanted
    if world > 1 and device.type == "cpu":
        # torch.distributed.run sets OMP_NUM_THREADS=1; share the cores out instead.
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
        torch.set_num_threads(max(1, cores // local))
    return acc, Dist(acc.process_index, acc.num_processes, device), device


def fsdp_version(acc) -> int | None:
    """1 or 2 when accelerate runs FSDP, else None."""
    plugin = getattr(acc.state, "fsdp_plugin", None)
    if str(acc.distributed_type).rsplit(".", 1)[-1] != "FSDP" or plugin is None:
        return None
    return int(getattr(plugin, "fsdp_version", 1))


def check_sharding(acc, method, precision: str = "no") -> list[str]:
    """Refuse what peftlab cannot run under FSDP; returns warnings (accelerate quietly
    falls back to DDP where it cannot run FSDP)."""
    version = fsdp_version(acc)
    if version is None:
        if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
            return [
                "accelerate runs FSDP on GPUs only; this run is plain data-parallel "
                "(DDP), every process holding the whole model"
            ]
        return []
    if version != 2:
        raise ValueError(
            "peftlab trains with FSDP2 only (one sharded tensor per "
            "parameter; FSDP1's flat parameters need one dtype per layer, "
            "which fp32 adapters on a bf16 base break): set fsdp_version: 2 "
            "in the accelerate config, as configs/accelerate-fsdp.yaml does"
        )
    if precision == "fp16":
        raise ValueError(
            "fp16 under FSDP is not supported: its loss scaling would check "
            "each process's gradient shard for overflow separately; use "
            "--mixed-precision bf16"
        )
    if not method.supports_sharding:
        raise ValueError(
            f"method {method.name!r} cannot train with FSDP (see its "
            "supports_sharding); train it data-parallel: accelerate launch "
            "--multi_gpu ... (DDP)"
        )
    return []


def _fsdp_types() -> tuple[type, ...]:
    if not torch.distributed.is_available():
        return ()
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    return FSDPModule, FullyShardedDataParallel


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP shards some of ``model``'s modules."""
    kinds = _fsdp_types()
    return bool(kinds) and any(isinstance(m, kinds) for m in model.modules())


def is_parallel_wrapper(model: nn.Module) -> bool:
    """Whether ``model``'s own forward must run rather than its submodules' directly:
    DDP's forward arms the gradient all-reduce, FSDP's gathers the sharded weights."""
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, (DistributedDataParallel, *_fsdp_types()))


def unwrap_parallel(model: nn.Module) -> nn.Module:
    """The model a DDP or FSDP1 wrapper holds (FSDP2 shards in place: ``model``)."""
    while is_parallel_wrapper(model) and hasattr(model, "module"):
        model = model.module
    return model


def _masked_logits_supported() -> bool:
    """Whether this transformers takes a boolean (batch × position) ``logits_to_keep``."""
    from transformers import modeling_utils

    return hasattr(modeling_utils, "slice_logits_to_keep")


def wrapper_logits(
    model: nn.Module, batch: dict, keep: torch.Tensor, plain_head: bool
) -> torch.Tensor:
    """Logits at the positions ``keep`` marks (batch × (length − 1): position t predicts
    token t + 1), through a parallel wrapper's own forward (which must run). With a plain
    head the model is asked for those positions only (a boolean ``logits_to_keep``), so
    the prompt pays no vocabulary projection, as in one process."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}  # padded or flattened
    inputs["use_cache"] = False  # as response_nll: no cache in a training forward
    if plain_head and _masked_logits_supported():
        mask = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        mask[:, :-1] = keep
        return model(**inputs, logits_to_keep=mask).logits
    return model(**inputs).logits[:, :-1][keep]


@contextlib.contextmanager
def full_params(model: nn.Module):
    """FSDP2: every sharded module's parameters gathered whole for the duration (a
    collective: every process enters; the full model sits on each device meanwhile), so
    adapters can be read as usual. Elsewhere nothing happens."""
    kinds = _fsdp_types()
    mods = [m for m in model.modules() if kinds and isinstance(m, kinds[0])]
    for m in mods:
        m.unshard()
    try:
        yield
    finally:
        for m in mods:
            m.reshard()


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) value gathered whole (a collective); others as they are."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def shard_like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A whole tensor laid out like the sharded ``param`` (for optimiser state on
    resume); unchanged when ``param`` is not sharded."""
    if not hasattr(param, "device_mesh") or value.shape != param.shape:
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(
        value.to(param.device_mesh.device_type), param.device_mesh, param.placements
    )
