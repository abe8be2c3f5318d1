"""DoRA: weight-decomposed low-rank adaptation (Liu et al., 2024, arXiv 2402.09353).

DoRA splits the adapted weight into a magnitude and a direction (paper Eq. 5):

    W' = m ⊙ (W0 + s·B A) / ‖W0 + s·B A‖_row,      s = alpha / r (or alpha / sqrt(r))

with one magnitude per output feature, m initialised to ‖W0‖_row so that a fresh adapter
(B = 0) is the identity. Following §4.3 the norm is treated as a constant (detached): it
tracks B and A in the forward pass but passes no gradient back, which saves memory at
what the paper reports as a negligible cost in accuracy.

Two choices beyond the paper, both made to match Hugging Face peft 0.21 exactly:

- A bias is *not* scaled: y = f ⊙ (W0 x + s·B A x) + b with f = m / ‖W0 + s·B A‖_row.
- With dropout active, the adapter branch sees dropout(x) and the base branch x:
  y = W0 x + b + (f − 1) ⊙ W0 x_d + f ⊙ s·B A x_d,   x_d = dropout(x).
  Without dropout this is the formula above; with it, its expectation is.

The row norm is computed without ever forming the dense out×in product B A (§4.3 is
about memory too): with P = W0 Aᵀ (out×r) and G = A Aᵀ (r×r),

    ‖W0 + s·B A‖²_i = ‖W0‖²_i + 2s·Σ_k B_ik P_ik + s²·Σ_kl B_ik G_kl B_il,

where ‖W0‖²_row is computed once and cached (W0 is frozen).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch
from torch import nn

from ..core.options import make_config
from ..quant.linear4bit import Linear4bit
from .base import AdapterLayer
from .lora import LoRA, LoraConfig, LoraLinear

# Weights that are not fp32 are cast to fp32 in row blocks of at most this many elements
# (64 MiB: a 4096×4096 weight in one block, fewer kernel launches), so the fp32 norm math
# never holds a full fp32 copy of a large bf16 weight (8192×28672 would be 940 MB).
_FP32_BLOCK_ELEMS = 1 << 24

# A row norm of exactly zero (a zero row of W0 + sBA) would give m / 0; the smallest normal
# fp32 keeps the factor finite and changes nothing for any norm a real weight has.
_NORM_FLOOR = torch.finfo(torch.float32).tiny


@dataclasses.dataclass
class DoraConfig(LoraConfig):
    """DoRA options: exactly LoRA's (DoRA adds one magnitude vector per adapted layer)."""


# -- numerics (pure functions) ------------------------------------------------------------
def _fp32_row_blocks(w: torch.Tensor):
    """fp32 blocks of rows covering ``w`` in order; an fp32 weight comes as one block with
    no copy, others in blocks of at most ``_FP32_BLOCK_ELEMS`` elements."""
    if w.dtype == torch.float32:
        yield w
        return
    rows = max(1, _FP32_BLOCK_ELEMS // max(1, w.shape[1]))
    for i in range(0, w.shape[0], rows):
        yield w[i : i + rows].float()


def row_sq_norms(w: torch.Tensor) -> torch.Tensor:
    """‖w‖²_row in fp32, without an fp32 copy of the whole of ``w``."""
    # vector_norm reduces in one kernel; (w * w).sum(1) would allocate an out×in temporary.
    return torch.cat([torch.linalg.vector_norm(blk, dim=1) ** 2 for blk in _fp32_row_blocks(w)])


def dora_row_norm(
    w0: torch.Tensor,
    w0_sq: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """‖W0 + s·B A‖_row (fp32, one per output feature) without forming B A.

    ``w0``: out×in (any float dtype), ``w0_sq``: its cached ‖W0‖²_row (fp32),
    ``lora_a``: r×in, ``lora_b``: out×r. Costs out·in·r + in·r² + out·r² multiply-adds
    and O(out·r + r²) memory, against out·in·r and two out×in tensors for the dense form.
    """
    a, b = lora_a.float(), lora_b.float()
    # P = W0 Aᵀ, built from fp32 row blocks of W0.
    p = torch.cat([blk @ a.T for blk in _fp32_row_blocks(w0)])
    cross = (b * p).sum(dim=1)  # rowdot(W0, B A)
    ba_sq = ((b @ (a @ a.T)) * b).sum(dim=1)  # ‖B A‖²_row = b_i G b_iᵀ
    sq = w0_sq + (2.0 * scaling) * cross + (scaling * scaling) * ba_sq
    # Cancellation (W0 ≈ −sBA on a row) can push the sum a hair below zero.
    return sq.clamp_min(0.0).sqrt().clamp_min(_NORM_FLOOR)


# -- the layer ------------------------------------------------------------------------------
class DoraLinear(LoraLinear):
    """``nn.Linear`` with DoRA: ``m / ‖W0 + sBA‖_row ⊙ (W0 x + s·B A x) + b``.

    The magnitude is a parameter named ``lora_magnitude_vector`` (out,), fp32 like A and B,
    so its local name is exactly the key peft writes into ``adapter_model.safetensors``.
    """

    reads_base_weight = True  # ‖W0 + sBA‖_row reads W0 itself

    def low_rank_factors(self) -> None:
        """DoRA rescales every row after adding s·B A: not a plain low-rank update."""
        return None

    def __init__(self, base_layer: nn.Linear, r: int, scaling: float, dropout: float):
        super().__init__(base_layer, r, scaling, dropout)
        # Plain attributes, not buffers: derived values stay out of the state dict.
        self._w0_sq_cache: tuple[tuple, torch.Tensor] | None = None
        self._factor_cache: tuple[tuple, torch.Tensor] | None = None
        self._merge_factor: torch.Tensor | None = None
        self._merge_lost_rows: tuple[torch.Tensor, torch.Tensor] | None = None
        # m0 = ‖W0‖_row (B = 0 at init): f = 1 exactly, the identity; peft starts there too.
        self.lora_magnitude_vector = nn.Parameter(self._w0_sq().sqrt())

    # -- the cached ‖W0‖²_row -------------------------------------------------------------
    def _w0_sq(self) -> torch.Tensor:
        """‖W0‖²_row (fp32), recomputed only when the base weight changes.

        The key holds storage, dtype, device, shape and the in-place version counter, so
        ``model.to(...)``, ``load_state_dict`` and merge/unmerge (in-place writes) all
        invalidate it without anyone having to remember to.
        """
        if torch.compiler.is_compiling():
            # Traced (``--compile``): computed in the graph (out·in multiply-adds beside
            # the norm's out·in·r); a tensor's address and version cannot be read there.
            w = self.base_weight()
            with torch.no_grad(), _no_autocast(w):
                return row_sq_norms(w)
        key = self.base_weight_key()  # for a 4-bit base: the packed codes' identity
        if self._w0_sq_cache is not None and self._w0_sq_cache[0] == key:
            return self._w0_sq_cache[1]
        w = self.base_weight()  # dequantized (a transient copy) for a 4-bit base
        with torch.no_grad(), _no_autocast(w):
            value = row_sq_norms(w)
        # A tensor made in inference mode cannot be saved for a later backward (m / norm
        # saves the norm), so only cache values made outside it.
        if not torch.is_inference_mode_enabled():
            self._w0_sq_cache = (key, value)
        return value

    def weight_norm(self) -> torch.Tensor:
        """‖W0 + s·B A‖_row in fp32, detached (paper §4.3)."""
        w = self.base_weight()  # a 4-bit base is dequantized for the norm, then let go
        with torch.no_grad(), _no_autocast(w):
            return dora_row_norm(
                w, self._w0_sq(), self.lora_A.weight, self.lora_B.weight, self.scaling
            )

    def dora_factor(self) -> torch.Tensor:
        """f = m / ‖W0 + sBA‖_row (fp32); gradient flows to m only, the norm is constant.

        Without grad (evaluation, generation) f is kept until W0, A, B or m change: a
        decoding step would otherwise recompute the norm (out·in·r multiply-adds, as much
        as the layer's own matmul for a batch of r tokens) for every new token."""
        if torch.is_grad_enabled():
            return self.lora_magnitude_vector / self.weight_norm()
        ps = (self.lora_A.weight, self.lora_B.weight, self.lora_magnitude_vector)
        key = (self.base_weight_key(), *((p.data_ptr(), p._version) for p in ps))
        if self._factor_cache is None or self._factor_cache[0] != key:
            self._factor_cache = (key, self.lora_magnitude_vector / self.weight_norm())
        return self._factor_cache[1]

    # -- forward ----------------------------------------------------------------------------
    def _low_rank(self, x: torch.Tensor) -> torch.Tensor:
        """s · B A x on an input that already went through dropout."""
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.lora_A.weight.dtype)  # fp32 adapter meets the input in one dtype
        return self.lora_B(self.lora_A(x)) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = f ⊙ (W0 x + s·B A x) + b  (paper Eq. 5, bias left unscaled as peft does).

        With dropout in training (as peft): y = W0 x + b + f ⊙ (W0 x_d + s·B A x_d) − W0 x_d,
        x_d = dropout(x), whose expectation is the formula above.

        Without dropout the product f ⊙ z (z = W0 x + sBA x) is the layer's ``scale_rows``
        op, f fp32 in it (bf16 would round f ≈ 1.003 to 1 and erase a trained magnitude).
        The lean one keeps only y = f ⊙ z for m's gradient (:class:`~.lean.ScaleRows`):
        where the next op saves y anyway (attention's q, k, v; the MLP's gate and up) DoRA
        then costs no activation memory beyond LoRA's. With dropout one batch×out tensor
        z is saved.
        """
        out = self.base_layer(x)
        if self.merged:
            return out
        bias = self.base_layer.bias
        f = self.dora_factor()
        if self.training and isinstance(self.lora_dropout, nn.Dropout):
            x_d = self.lora_dropout(x)
            # One more base matmul: the direction term must see the same dropped input as
            # the low-rank term (peft does the same), and the base output saw all of x.
            base_d = self.base_layer(x_d)
            if bias is not None:
                base_d = base_d - bias
            z = base_d + self._low_rank(x_d).to(out.dtype)
            return out + (f * z - base_d).to(out.dtype)
        base = out - bias if bias is not None else out  # the magnitude never scales b
        y = self.ops.scale_rows(base + self._low_rank(x).to(out.dtype), f)
        return y + bias if bias is not None else y

    # -- merging ----------------------------------------------------------------------------
    def _dense_update_fp32(self) -> torch.Tensor:
        """s · B A as a dense fp32 out×in tensor (merging needs it; forward never does)."""
        return (self.lora_B.weight.float() @ self.lora_A.weight.float()) * self.scaling

    def _original_weight_fp32(self) -> torch.Tensor:
        """W0 in fp32; when merged, recovered from the factor kept at merge time."""
        w = self.base_weight().float()  # merged: the dense copy that holds W'
        if not self.merged:
            return w
        f = self._merge_factor.to(w.device)
        w0 = w / f[:, None] - self._dense_update_fp32()
        if self._merge_lost_rows is not None:
            idx, rows = self._merge_lost_rows
            w0[idx.to(w.device)] = rows.to(w.device).float()
        return w0

    def delta_weight(self) -> torch.Tensor:
        """W' − W0 in fp32 with W' = f ⊙ (W0 + sBA) (dense: for inspection and merging)."""
        with torch.no_grad():
            w0 = self._original_weight_fp32()
            if self.merged:
                return self.base_layer.weight.float() - w0
            return self.dora_factor()[:, None] * (w0 + self._dense_update_fp32()) - w0

    def _merge(self) -> None:
        w = self.base_layer.weight
        f = self.dora_factor().detach().clone()
        # Keep f itself (not m), so that unmerge inverts exactly this merge even if an
        # optimiser's weight decay touches m while merged.
        self._merge_factor = f
        lost = (f == 0).nonzero().flatten()  # rows f = 0 erases cannot be divided back
        self._merge_lost_rows = (lost, w[lost].clone()) if lost.numel() else None
        w0 = w.float()
        w.copy_((f[:, None] * (w0 + self._dense_update_fp32())).to(w.dtype))
        self._w0_sq_cache = self._factor_cache = None

    def _unmerge(self) -> None:
        w = self.base_layer.weight
        w.copy_(self._original_weight_fp32().to(w.dtype))
        self._merge_factor = self._merge_lost_rows = None
        self._w0_sq_cache = self._factor_cache = None


def _no_autocast(w: torch.Tensor):
    """Norm math must stay fp32 even inside a bf16 autocast region (the meta device,
    where the memory planner builds its skeletons, has no autocast)."""
    if w.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(w.device.type, enabled=False)


# -- the method ---------------------------------------------------------------------------
class DoRA(LoRA):
    """Weight-decomposed low-rank adaptation; saved as peft's ``LORA`` with ``use_dora``."""

    name = "dora"
    peft_type = "LORA"
    config_cls = DoraConfig

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        if not isinstance(module, (nn.Linear, Linear4bit)):  # on a 4-bit base: QDoRA
            raise TypeError(f"DoRA can wrap nn.Linear only; {name} is {type(module).__name__}")
        c = self.config
        return DoraLinear(module, c.r, c.scaling, c.dropout)

    # The magnitude's local name, ``lora_magnitude_vector``, already is peft's key (peft
    # strips the ``.weight`` of its internal ``lora_magnitude_vector.default.weight`` when
    # saving, for compatibility with older checkpoints), so peft_key/local_name stay the
    # identity inherited from Method.

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        return {**super().to_peft_config(target_modules, layers), "use_dora": True}

    @classmethod
    def accepts_peft_config(cls, cfg: dict[str, Any]) -> bool:
        return cfg.get("peft_type") == "LORA" and bool(cfg.get("use_dora", False))

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> DoRA:
        opts = cls.lora_options_from_peft(cfg)
        return cls(make_config(cls.config_cls, opts, where="DoRA adapter_config.json"))
