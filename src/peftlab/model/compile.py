"""Regional compilation (``--compile``): each decoder layer, adapters included, compiled.

A causal LM is one decoder layer repeated. ``torch.compile`` of each layer (the region)
rather than of the whole model compiles one layer's code once (the layers share it: their
parameters are the graph's inputs, not constants), so compile time does not grow with
depth, and the loss head, the data and the loop stay plain Python. Inside a layer the
compiler sees the adapters' equations with the base layers' and may fuse them (an
adapter's scaling into its matmul, DoRA's row scaling, the NF4 dequantization into the
matmul that reads it), which in eager mode are one kernel launch each.

What it changes, and what it does not:

- The layer's ``forward`` is replaced *on the instance* by a dispatcher: no wrapper
  module, so parameter names, the state dict, checkpoints and the PEFT files are exactly
  those of the eager model.
- The compiled forward runs only in training mode with gradients on. Evaluation,
  generation (a KV cache and a length that changes every token), merging and saving run
  the layer's own forward, so a merged layer never meets a graph traced unmerged.
- Gradient checkpointing (transformers checkpoints inside the layer's ``forward``) is
  traced into the graph as ``torch.utils.checkpoint``; a side effect of the layer's
  forward that the recomputation would replay (the ``kernels`` package's registry of
  the active rotary function, set and reset around attention) is not replayed, as
  ``torch._dynamo.config.skip_fwd_side_effects_in_bwd_under_checkpoint`` says.
- :func:`uncompile_layers` puts the layers' own forward back (the end of training).

The adapter code is written so that a layer traces with no graph break (tested for every
method, fp32 and bf16 autocast, with and without checkpointing:
``tests/test_compile.py``): where eager code keeps Python-side state (DoRA's cached
‖W0‖²_row keyed by a tensor's address, the NF4 layer's reused buffers), a traced branch
(``torch.compiler.is_compiling()``) computes the same values in the graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

BACKEND = "inductor"
"""torch.compile's default backend: Triton kernels on a GPU, C++/OpenMP on the CPU."""

_SIDE_EFFECTS_FLAG = "skip_fwd_side_effects_in_bwd_under_checkpoint"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated decoder layers of a transformers causal LM (``model.layers`` of its
    decoder); a model without them is an error naming its class."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(
            f"--compile: {type(model).__name__} has no decoder layers to compile "
            "(expected model.get_decoder().layers)"
        )
    return list(layers)


def is_compiled(layer: nn.Module) -> bool:
    return getattr(vars(layer).get("forward"), "_peftlab_compiled", False)


def _dispatcher(layer: nn.Module, compiled: Callable) -> Callable:
    eager = type(layer).forward.__get__(layer)
    flags = {_SIDE_EFFECTS_FLAG: True} if hasattr(torch._dynamo.config, _SIDE_EFFECTS_FLAG) else {}

    def forward(*args, **kwargs):
        if layer.training and torch.is_grad_enabled():
            with torch._dynamo.config.patch(**flags):
                return compiled(*args, **kwargs)
        return eager(*args, **kwargs)

    forward._peftlab_compiled = True
    return forward


def compile_layers(model: nn.Module, backend: str | None = None, **options) -> int:
    """Give every decoder layer of ``model`` a compiled training forward (see the
    module's docstring); ``backend`` (default :data:`BACKEND`) and ``options`` go to
    ``torch.compile``. Returns how many layers have one. Layers compiled already are
    left as they are."""
    backend = backend or BACKEND
    n = 0
    for layer in decoder_layers(model):
        if not is_compiled(layer):
            if "forward" in vars(layer):  # someone else's forward (offloading hooks)
                raise ValueError(
                    f"--compile: {type(layer).__name__} has a replaced forward "
                    "(accelerate's offloading?); it cannot be compiled"
                )
            compiled = torch.compile(type(layer).forward.__get__(layer), backend=backend, **options)
            layer.forward = _dispatcher(layer, compiled)
        n += 1
    return n


def uncompile_layers(model: nn.Module) -> int:
    """Undo :func:`compile_layers`: the layers run their own forward; returns how many."""
    layers = [m for m in model.modules() if is_compiled(m)]
    for layer in layers:
        del layer.forward
    return len(layers)


@contextlib.contextmanager
def compiled_layers(model: nn.Module, enabled: bool, log=None) -> Iterator[int]:
    """While training: the decoder layers compiled (``enabled``), their own forward
    again afterwards, even on an error. Yields how many layers are compiled."""
    if not enabled:
        yield 0
        return
    n = compile_layers(model)
    if log is not None:
        log(f"compile: {n} decoder layers compiled with torch.compile ({BACKEND}), for training")
    try:
        yield n
    finally:
        uncompile_layers(model)
