"""``peftlab train`` under FSDP2 on CPU, for tests/test_distributed.py.

accelerate runs FSDP on GPUs only (on CPU it quietly falls back to DDP), so this script
stands in for accelerate's FSDP2 preparation: it shards every decoder layer and the root
with torch's ``fully_shard`` on a gloo mesh, as accelerate's TRANSFORMER_BASED_WRAP does,
and points the optimiser at the sharded parameters. Launch it with
``accelerate launch --multi_gpu --num_processes 2 fsdp_cpu_train.py ...``
(the arguments are those of ``peftlab train``).
"""

import sys

import accelerate
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard


def prepare_fsdp2(self, model, opt):
    mesh = init_device_mesh("cpu", (self.num_processes,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    # fully_shard swaps each parameter for a sharded one (same order).
    opt.param_groups[0]["params"] = [p for p in model.parameters() if p.requires_grad]
    return model, opt


accelerate.Accelerator.prepare = prepare_fsdp2

from peftlab.cli import main  # noqa: E402  (after the patch)

sys.exit(main(["train", *sys.argv[1:]]))
