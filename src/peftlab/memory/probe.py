"""What one decoder layer saves for backward, counted on the model's own shape.

The planner does not guess activation memory from formulas: it builds a one-layer copy
of the model from its config (random weights, a 256-token vocabulary, no checkpoint
read), injects the method, runs a forward under the run's precision at two sequence
lengths, and counts the bytes autograd saves (:func:`saved_tensor_census`). Bytes per
row are then ``a·S + b·S²`` (``b`` is the attention matrix of an eager attention; the
SDPA kernels keep it near zero). One probe of a 7B layer takes a few seconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .measure import saved_tensor_census

PROBE_VOCAB = 256
PROBES = ((1, 33), (1, 67), (1, 131), (2, 67))
"""(rows, length) of the probes; odd token counts, so that no activation is shaped like a
weight (a saved tensor shaped like the running layer's weight counts as its autocast copy)."""
HEAD_KIND = "output head and loss"


@dataclass(frozen=True)
class LayerCensus:
    """Bytes saved for backward by one decoder layer for ``rows`` rows of length S:
    ``const + shared·S + rows·(linear·S + square·S²)``, by kind; and outside the layers
    (the final norm and the head's saved hidden states: ``head_linear`` per token)."""

    const: dict[str, float]
    shared: dict[str, float]
    linear: dict[str, float]
    square: dict[str, float]
    head_linear: float
    layer_input: float
    """Bytes per token of a decoder layer's input (what checkpointing keeps per layer)."""

    def per_layer(self, rows: int, seq: int) -> dict[str, float]:
        return {
            k: self.const.get(k, 0.0)
            + self.shared.get(k, 0.0) * seq
            + rows * (self.linear.get(k, 0.0) * seq + self.square.get(k, 0.0) * seq * seq)
            for k in set(self.const) | set(self.linear) | set(self.square)
        }


def _probe_model(
    config, method, dtype: torch.dtype, device: torch.device, narrow: torch.dtype | None = None
):
    from transformers import AutoModelForCausalLM

    from ..model.inject import inject
    from .shapes import _quiet

    small = copy.deepcopy(getattr(config, "text_config", None) or config)
    small.num_hidden_layers = 1
    small.vocab_size = PROBE_VOCAB
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if isinstance(getattr(small, key, None), int) and getattr(small, key) >= PROBE_VOCAB:
            setattr(small, key, 0)
    if hasattr(small, "layer_types") and small.layer_types:
        small.layer_types = small.layer_types[:1]
    torch.manual_seed(0)
    with _quiet(), torch.device(device), _no_init():
        model = AutoModelForCausalLM.from_config(small, dtype=dtype)
    with torch.no_grad():  # values do not matter, only shapes; a constant is quick
        for p in model.parameters():
            p.fill_(0.02)
    inject(model, method)
    if narrow is not None:  # as training stores them (training/residency.py)
        from ..methods.frozen import castable_linears

        with torch.no_grad():
            for m in castable_linears(model, narrow).values():
                m.weight.data = m.weight.data.to(narrow)
    model.train()
    model.config.use_cache = False
    return model


def _no_init():
    """Skip transformers' random initialisation (seconds for a 7B layer)."""
    import contextlib

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        return contextlib.nullcontext()
    return no_init_weights()


def _census(model, rows: int, seq: int, autocast) -> dict[str, int]:
    from ..training.loss import DEFAULT_LOSS, response_nll

    dev = next(model.parameters()).device
    ids = torch.randint(0, PROBE_VOCAB, (rows, seq), device=dev)
    labels = ids.clone()
    labels[:, : seq // 4] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with saved_tensor_census(model) as counts:
        with autocast():
            nll, _ = response_nll(model, batch, DEFAULT_LOSS)
    del nll
    return dict(counts)


def layer_census(
    config,
    method,
    dtype: torch.dtype,
    autocast,
    device: torch.device | str = "cpu",
    narrow: torch.dtype | None = None,
) -> LayerCensus:
    """Measure one decoder layer of ``config`` with ``method`` (a fresh Method object);
    ``narrow``: the compute dtype the frozen projections are stored in while training
    (``training/residency.py``), None: as loaded."""
    device = torch.device(device)
    model = _probe_model(config, method, dtype, device, narrow)
    counts = [_census(model, r, s, autocast) for r, s in PROBES]
    const, shared, linear, square = {}, {}, {}, {}
    xs = torch.tensor([[1.0, s, r * s, r * s * s] for r, s in PROBES], dtype=torch.float64)
    for k in set().union(*counts):
        if k == HEAD_KIND:
            continue
        ys = torch.tensor([[float(c.get(k, 0))] for c in counts], dtype=torch.float64)
        c, d, a, b = torch.linalg.solve(xs, ys).flatten().tolist()  # exact: 4 probes
        const[k], shared[k], linear[k], square[k] = (
            max(0.0, c),
            max(0.0, d),
            max(0.0, a),
            max(0.0, b),
        )
    head = max(c.get(HEAD_KIND, 0) / (r * s) for c, (r, s) in zip(counts, PROBES))
    hidden = model.config.hidden_size
    emb = model.get_input_embeddings().weight
    act = torch.float32 if emb.dtype == torch.float32 else emb.dtype
    layer_input = hidden * torch.empty((), dtype=act).element_size()
    del model
    return LayerCensus(const, shared, linear, square, head, float(layer_input))


_CACHE: dict[tuple, LayerCensus] = {}


def cached_census(key: tuple, build) -> LayerCensus:
    """``build()`` (a :func:`layer_census`) memoised on ``key`` (model config, method
    options, dtype, precision): a plan of several settings probes each layer once."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]
