"""A frozen Linear layer whose weight is stored in NF4 (QLoRA: Dettmers et al., 2023,
arXiv 2305.14314, §3).

    y = x · dequant(W_NF4)ᵀ + b        (paper Eq. 5, with the LoRA term added by the adapter)

The layer holds only the packed 4-bit codes and their double-quantized block scales
(≈ 4.13 bits per weight, :mod:`peftlab.quant.nf4`), never a dense copy of the weight.
Forward dequantizes into a temporary, multiplies and lets it go; the autograd function
saves only the packed tensors, and backward dequantizes *again* to form ∂L/∂x = ∂L/∂y · W.
That is the point of QLoRA's memory budget: with autograd's default, a dense
dequantized weight of every layer would live from forward to backward, and a 4-bit model
would need as much memory as a 16-bit one during training.

The weight itself gets no gradient (it is frozen; QLoRA trains only the adapters).
Computation happens in ``compute_dtype`` (fp32, bf16 or fp16; under autocast, in the
autocast dtype, like ``nn.Linear``); the output has the input's dtype outside autocast.
Nothing here imports bitsandbytes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.modules import set_submodule
from . import kernels
from .nf4 import ABSMAX_BLOCKSIZE, BLOCKSIZE, NF4Tensor, dequantize_nf4, quantize_nf4

COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class Linear4bit(nn.Module):
    """``nn.Linear`` with an NF4 weight (frozen) and an optional bias (frozen).

    Buffers: ``packed`` (uint8, two codes per byte), ``absmax`` (uint8 codes, or fp32
    without double quantization), ``absmax_scale`` and ``absmax_offset`` (fp32). They keep
    their dtypes under ``module.to(dtype)``; only the bias and ``compute_dtype`` are
    floating-point settings of the layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        compute_dtype: torch.dtype = torch.float32,
        device=None,
        weight_dtype: torch.dtype = torch.float32,
        double_quant: bool = True,
    ):
        super().__init__()
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype}")
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.weight_dtype = weight_dtype  # what was quantized; to_linear()'s default
        self.blocksize = BLOCKSIZE
        self.kernel = "auto"  # dequantization kernel (:mod:`.kernels`); same bits
        # A dense copy of the weight kept while generating (model/inference.py).
        self._dense: torch.Tensor | None = None
        n = in_features * out_features
        blocks = math.ceil(n / BLOCKSIZE)
        # Empty buffers of the final sizes (a meta-device skeleton costs nothing; the
        # values arrive through load_weight()).
        self.register_buffer("packed", torch.empty((n + 1) // 2, dtype=torch.uint8, device=device))
        if double_quant:
            self.register_buffer("absmax", torch.empty(blocks, dtype=torch.uint8, device=device))
            self.register_buffer(
                "absmax_scale",
                torch.empty(
                    math.ceil(blocks / ABSMAX_BLOCKSIZE), dtype=torch.float32, device=device
                ),
            )
            self.register_buffer(
                "absmax_offset", torch.empty((), dtype=torch.float32, device=device)
            )
        else:
            self.register_buffer("absmax", torch.empty(blocks, dtype=torch.float32, device=device))
            self.register_buffer("absmax_scale", None)
            self.register_buffer("absmax_offset", None)
        self.bias = (
            nn.Parameter(
                torch.empty(out_features, dtype=weight_dtype, device=device), requires_grad=False
            )
            if bias
            else None
        )

    # -- building ----------------------------------------------------------------------
    @classmethod
    def from_linear(
        cls, linear: nn.Linear, compute_dtype: torch.dtype | None = None, double_quant: bool = True
    ) -> Linear4bit:
        """Quantize ``linear`` (its weight is read, not kept). ``compute_dtype``
        defaults to the weight's dtype."""
        w = linear.weight
        layer = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            compute_dtype or w.dtype,
            device="meta",
            weight_dtype=w.dtype,
            double_quant=double_quant,
        )
        layer.load_weight(w, linear.bias)
        return layer

    @torch.no_grad()
    def load_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Quantize ``weight`` (out×in) into this layer, replacing its buffers (also on a
        meta-device skeleton); ``bias`` is copied as is."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"weight of shape {tuple(weight.shape)} does not fit a "
                f"Linear4bit({self.in_features}, {self.out_features})"
            )
        q = quantize_nf4(weight, BLOCKSIZE, double_quant=self.absmax_scale is not None)
        self.packed, self.absmax = q.packed, q.absmax
        if q.double_quant:
            self.absmax_scale, self.absmax_offset = q.absmax_scale, q.absmax_offset
        self.weight_dtype = weight.dtype
        if bias is not None:
            if self.bias is None:
                raise ValueError("this Linear4bit was built without a bias")
            self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)

    # -- reading the weight ------------------------------------------------------------
    def quant_state(self) -> NF4Tensor:
        """The packed weight as an :class:`NF4Tensor` (views of the buffers, no copy)."""
        return NF4Tensor(
            self.packed,
            self.absmax,
            self.weight_shape,
            self.weight_dtype,
            self.blocksize,
            self.absmax_scale,
            self.absmax_offset,
        )

    @property
    def weight_shape(self) -> torch.Size:
        return torch.Size((self.out_features, self.in_features))

    @property
    def weight_numel(self) -> int:
        """Logical number of weights (what parameter counts report for this layer)."""
        return self.out_features * self.in_features

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A new dense out×in tensor (``compute_dtype`` by default) with the NF4 values;
        the caller owns it, nothing here keeps it."""
        return dequantize_nf4(self.quant_state(), dtype or self.compute_dtype)

    def cache_key(self) -> tuple:
        """Changes whenever the stored weight does (for caches of values derived from
        it, e.g. DoRA's ‖W0‖²_row): storage, version counter, device and compute dtype."""
        p = self.packed
        return (p.data_ptr(), p._version, p.device, self.compute_dtype)

    def to_linear(self, dtype: torch.dtype | None = None) -> nn.Linear:
        """A plain ``nn.Linear`` holding the dequantized weight (``weight_dtype`` by
        default) and the bias, on this layer's device."""
        dtype = dtype or self.weight_dtype
        dense = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device="meta",
            dtype=dtype,
        )
        dense.weight = nn.Parameter(self.dequantized_weight(dtype), requires_grad=False)
        if self.bias is not None:
            dense.bias = nn.Parameter(self.bias.detach().to(dtype).clone(), requires_grad=False)
        return dense.train(self.training)

    def nbytes(self) -> int:
        """Bytes held by the layer (packed weight, statistics and bias)."""
        extra = self.bias.numel() * self.bias.element_size() if self.bias is not None else 0
        return self.quant_state().nbytes() + extra

    # -- module plumbing -----------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        # module.to(dtype) / .half() cast every floating buffer; the fp32 block statistics
        # are part of the NF4 format (bf16 would round the scales of every block), so they
        # follow the device change only.
        stats = {k: v for k, v in self._buffers.items() if v is not None and v.is_floating_point()}
        super()._apply(fn, recurse)
        for name, old in stats.items():
            new = self._buffers[name]
            if new.dtype != old.dtype:
                self._buffers[name] = old.to(new.device)
        return self

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, nf4 blocksize={self.blocksize}, "
            f"double_quant={self.absmax_scale is not None}, "
            f"compute_dtype={self.compute_dtype}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = self._dense
        if (
            dense is not None
            and not torch.is_grad_enabled()
            and dense.dtype
            == (
                torch.get_autocast_dtype(x.device.type)
                if torch.is_autocast_enabled(x.device.type)
                else self.compute_dtype
            )
        ):
            # generating: the cached dense weight (model.inference.inference_weights),
            # the same values as dequantizing again
            b = self.bias.to(dense.dtype) if self.bias is not None else None
            y = F.linear(x.to(dense.dtype), dense, b)
            return y if torch.is_autocast_enabled(x.device.type) else y.to(x.dtype)
        meta = (
            self.weight_shape,
            self.weight_dtype,
            self.blocksize,
            self.compute_dtype,
            self.kernel,
        )
        # Compiled (``--compile``): the same matmuls with no reused buffers or hand-over
        # between recomputation and backward, which the compiler plans itself.
        fn = _NF4LinearTraced if torch.compiler.is_compiling() else _NF4LinearFn
        return fn.apply(
            x, self.bias, meta, self.packed, self.absmax, self.absmax_scale, self.absmax_offset
        )


# Dense weights made by a recomputation under gradient checkpointing, for the backward
# of the same layer that follows in the same backward pass: (graph task, packed codes'
# address, dtype) -> weight. Entries of a finished backward pass are dropped.
_RECOMPUTED: dict[tuple, torch.Tensor] = {}


def _graph_task() -> int:
    """The id of the backward pass running on this thread, -1 outside backward."""
    f = getattr(torch._C, "_current_graph_task_id", None)
    return f() if f is not None else -1


def _keep_for_backward(
    task: int, packed: torch.Tensor, dtype: torch.dtype, w: torch.Tensor
) -> None:
    for key in [k for k in _RECOMPUTED if k[0] != task]:
        kernels.give_back(_RECOMPUTED.pop(key))
    old = _RECOMPUTED.get((task, packed.data_ptr(), dtype))
    if old is not None:  # the same layer used twice in one segment
        kernels.give_back(old)
    _RECOMPUTED[(task, packed.data_ptr(), dtype)] = w


class _NF4LinearFn(torch.autograd.Function):
    """y = x Wᵀ + b with W dequantized on the fly; saves only the packed W.

    ∂L/∂x = ∂L/∂y · W dequantizes W a second time in backward (paper §3: QLoRA
    "dequantizes the storage data type to the computation data type to perform the
    forward and backward pass"); W has no gradient (frozen), so x itself is not saved.
    Under gradient checkpointing the forward runs again inside backward; that second
    forward hands its dense W to the backward that follows (two dequantizations per
    step instead of three).
    """

    @staticmethod
    def forward(ctx, x, bias, meta, packed, absmax, absmax_scale, absmax_offset):
        shape, weight_dtype, blocksize, compute_dtype, kernel = meta
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            compute_dtype = torch.get_autocast_dtype(device_type)  # as nn.Linear would
        q = NF4Tensor(packed, absmax, shape, weight_dtype, blocksize, absmax_scale, absmax_offset)
        task = _graph_task()
        if task != -1 and ctx.needs_input_grad[0]:
            # A recomputation (gradient checkpointing) inside backward: this layer's
            # backward comes next, so it gets this dense weight instead of dequantizing
            # a third time (costs one decoder layer's dense weights while it runs).
            w = kernels.dequantize(
                q, compute_dtype, kernel, out=kernels.borrow(shape, compute_dtype, x.device)
            )
            _keep_for_backward(task, packed, compute_dtype, w)
        else:
            # The dense weight goes into a buffer reused by every layer
            # (kernels.workspace): it is dead once the matmul returns.
            w = kernels.dequantize(
                q, compute_dtype, kernel, out=kernels.workspace(shape, compute_dtype, x.device)
            )
        b = bias.to(compute_dtype) if bias is not None else None
        y = F.linear(x.to(compute_dtype), w, b)
        del w
        ctx.save_for_backward(packed, absmax, absmax_scale, absmax_offset)
        ctx.meta = (shape, weight_dtype, blocksize, compute_dtype, kernel)
        ctx.x_dtype = x.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        if not torch.is_autocast_enabled(device_type):
            y = y.to(x.dtype)  # outside autocast the layer keeps the activations' dtype
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        packed, absmax, absmax_scale, absmax_offset = ctx.saved_tensors
        shape, weight_dtype, blocksize, compute_dtype, kernel = ctx.meta
        grad_x = grad_b = None
        if ctx.needs_input_grad[0]:
            kept = _RECOMPUTED.pop((_graph_task(), packed.data_ptr(), compute_dtype), None)
            w = kept
            if w is None:
                q = NF4Tensor(
                    packed, absmax, shape, weight_dtype, blocksize, absmax_scale, absmax_offset
                )
                w = kernels.dequantize(
                    q,
                    compute_dtype,
                    kernel,
                    out=kernels.workspace(shape, compute_dtype, grad_y.device),
                )
            grad_x = (grad_y.to(compute_dtype) @ w).to(ctx.x_dtype)
            if kept is not None:
                kernels.give_back(kept)
        if ctx.needs_input_grad[1]:  # only if someone unfroze the bias
            grad_b = grad_y.reshape(-1, shape[0]).sum(0).to(ctx.bias_dtype)
        return grad_x, grad_b, None, None, None, None, None


class _NF4LinearTraced(torch.autograd.Function):
    """:class:`_NF4LinearFn`'s equations for ``torch.compile`` to trace: W dequantized
    by the pure kernel (the same bits as every kernel) into a fresh tensor in forward
    and again in backward; only the packed W is saved."""

    @staticmethod
    def forward(ctx, x, bias, meta, packed, absmax, absmax_scale, absmax_offset):
        shape, weight_dtype, blocksize, compute_dtype, _ = meta
        if torch.is_autocast_enabled(x.device.type):
            compute_dtype = torch.get_autocast_dtype(x.device.type)
        q = NF4Tensor(packed, absmax, shape, weight_dtype, blocksize, absmax_scale, absmax_offset)
        b = bias.to(compute_dtype) if bias is not None else None
        y = F.linear(x.to(compute_dtype), dequantize_nf4(q, compute_dtype), b)
        ctx.save_for_backward(packed, absmax, absmax_scale, absmax_offset)
        ctx.meta = (shape, weight_dtype, blocksize, compute_dtype)
        ctx.x_dtype = x.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y if torch.is_autocast_enabled(x.device.type) else y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        packed, absmax, absmax_scale, absmax_offset = ctx.saved_tensors
        shape, weight_dtype, blocksize, compute_dtype = ctx.meta
        grad_x = grad_b = None
        if ctx.needs_input_grad[0]:
            q = NF4Tensor(
                packed, absmax, shape, weight_dtype, blocksize, absmax_scale, absmax_offset
            )
            w = dequantize_nf4(q, compute_dtype)
            grad_x = (grad_y.to(compute_dtype) @ w).to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            grad_b = grad_y.reshape(-1, shape[0]).sum(0).to(ctx.bias_dtype)
        return grad_x, grad_b, None, None, None, None, None


# -- whole-model helpers ----------------------------------------------------------------------
def quantize_linears(
    model: nn.Module,
    names: list[str],
    compute_dtype: torch.dtype | None = None,
    double_quant: bool = True,
) -> None:
    """Replace the ``nn.Linear`` modules called ``names`` by :class:`Linear4bit`, one at
    a time (each dense weight is released as soon as its layer is quantized)."""
    for name in names:
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):
            raise TypeError(f"{name} is {type(module).__name__}, not nn.Linear")
        layer = Linear4bit.from_linear(module, compute_dtype, double_quant)
        set_submodule(model, name, layer.train(module.training))


def dequantize_linears(model: nn.Module, dtype: torch.dtype | None = None) -> list[str]:
    """Replace every :class:`Linear4bit` in ``model`` by a plain ``nn.Linear`` with its
    dequantized weight (``dtype``, default each layer's ``weight_dtype``); returns the
    names replaced."""
    names = [n for n, m in model.named_modules() if isinstance(m, Linear4bit)]
    for name in names:
        set_submodule(model, name, model.get_submodule(name).to_linear(dtype))
    return names
