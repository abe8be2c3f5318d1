"""Quantized storage for frozen base weights: NF4 with double quantization (QLoRA).

``nf4``: the format as pure functions; ``linear4bit``: the frozen 4-bit Linear layer;
``stream``: quantize a safetensors checkpoint while loading it.
"""

from .linear4bit import Linear4bit, dequantize_linears, quantize_linears
from .nf4 import (
    NF4Tensor,
    dequantize_nf4,
    dynamic_code,
    nf4_levels,
    quantization_error,
    quantize_nf4,
)
from .stream import load_quantized

__all__ = [
    "NF4Tensor",
    "quantize_nf4",
    "dequantize_nf4",
    "nf4_levels",
    "dynamic_code",
    "quantization_error",
    "Linear4bit",
    "quantize_linears",
    "dequantize_linears",
    "load_quantized",
]
