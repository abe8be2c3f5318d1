"""4-bit NormalFloat (NF4) with double quantization, as pure functions.

QLoRA (Dettmers et al., 2023, arXiv 2305.14314) stores a frozen weight as:

- **NF4 codes** (§3, "4-bit NormalFloat"): each value is divided by the absolute maximum
  of its block of 64 (blockwise absmax quantization) and replaced by the index of the
  nearest of 16 fixed levels, the quantiles of N(0, 1) rescaled to [-1, 1] with an exact 0.
  Two 4-bit indices are packed into one byte.
- **Double quantization** (§3, "Double Quantization"): the fp32 absmax of every block
  (32 bits per 64 weights = 0.5 bit/param) is itself quantized: its mean is subtracted and
  the centred values are quantized to 8 bits in blocks of 256, leaving one fp32 scale per
  256 blocks and one fp32 offset per tensor (≈ 0.127 bit/param instead of 0.5).

The layout is bitsandbytes' ``quantize_4bit(quant_type="nf4", blocksize=64,
compress_statistics=True)``, so both can read each other's data:

- values are taken in row-major (flattened) order; block ``b`` covers elements
  ``[64b, 64b + 64)``; element ``2j`` goes into the HIGH nibble of byte ``j``, ``2j + 1``
  into the low nibble;
- a tensor whose size is not a multiple of 64 ends in a shorter block, scaled by its
  own absmax (no error, no zero padding of the statistics); an odd size gets one pad
  nibble holding code 7 (the level 0.0), as bitsandbytes writes it;
- an all-zero block has absmax 0 and stores code 7 everywhere, so it dequantizes to 0;
- the absmax codes index bitsandbytes' signed 8-bit "dynamic" code (:func:`dynamic_code`).

Rounding, also as bitsandbytes does it on the CPU: NF4 codes go to the nearest level
(a value exactly half-way goes to the lower one); the 8-bit absmax codes go through a
grid of 65536 bins over [-1, 1], each bin taking the code nearest its centre. The grid
differs from exact nearest rounding for ~0.2% of the absmax values, by one code step of
an 8-bit code (a relative change < 1e-4 of one block's scale); we follow it so that the
packed data are bit-identical to bitsandbytes' on the same input.

Inputs may be fp32, bf16 or fp16; all arithmetic is fp32, and dequantization returns the
dtype asked for (the fp32 product rounded once). Large tensors are processed in chunks so
that quantizing a weight needs a few temporary MB, not a full fp32 copy of it.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F

# The 16 NF4 levels, listed in the QLoRA paper, Appendix E ("NormalFloat 4-bit data
# type"). They are the quantiles of N(0, 1) at 8 equally spaced probabilities from 0.5 to
# 0.9677 (positive side) and 7 on the negative side, each half normalised to [-1, 1],
# plus an exact zero (so zero weights and padding stay exactly zero). bitsandbytes
# hard-codes the same float values (``get_4bit_type("nf4")``).
NF4_LEVELS = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
NF4_ZERO_CODE = 7  # index of the level 0.0 (all-zero blocks, the odd-size pad nibble)
# The probability that the largest NF4 level sits at: (1 - 1/(2·15) + 1 - 1/(2·16)) / 2,
# half-way between the quantiles a 15- and a 16-level code would use (bitsandbytes'
# ``create_normal_map(offset=0.9677083)``); used only to re-derive the levels in tests.
NF4_OFFSET = 0.9677083

BLOCKSIZE = 64  # weights per absmax (paper §3: "blocksize of 64 for W")
ABSMAX_BLOCKSIZE = 256  # absmax values per 8-bit scale (paper §3: "blocksize of 256")
# Smallest absmax we divide by, so that an all-zero block scales to 0, not NaN (its
# stored absmax stays 0, which dequantizes it to exactly 0). bitsandbytes uses 1e-38.
_ABSMAX_FLOOR = 1e-38
# bitsandbytes' CPU 8-bit quantizer maps x in [-1, 1] to one of this many equal bins.
_GRID_BINS = 65536
# Elements handled per step; a multiple of the block size and of 2 (so no block or byte
# straddles two chunks). 1M elements: ~4 MB per temporary, as fast as larger chunks.
_CHUNK = 1 << 20
# Elements per dequantization step: its temporaries (~4 bytes per element) stay in the
# CPU's cache and below 1 MiB (small buffers a malloc reuses without mapping fresh pages);
# GPUs want big launches.
_DEQUANT_CHUNK = 1 << 16
_DEQUANT_CHUNK_GPU = 1 << 22


def nf4_levels(device=None) -> torch.Tensor:
    """The 16 NF4 levels as fp32 (sorted; index = 4-bit code)."""
    return torch.tensor(NF4_LEVELS, dtype=torch.float32, device=device)


def _table(name: str, device: torch.device) -> torch.Tensor:
    """Constant tables, built once per device (forward and backward dequantize every
    step; rebuilding them would cost a host-to-device copy each time on a GPU)."""
    # Built outside inference mode even when first asked for inside it: a cached
    # inference tensor could not take part in autograd later.
    if torch.compiler.is_compiling():  # traced: a few ops on 256 values, no cache
        return _build_table.__wrapped__(name, device)
    with torch.inference_mode(False):
        return _build_table(name, device)


@functools.lru_cache(maxsize=16)
def _build_table(name: str, device: torch.device) -> torch.Tensor:
    if name == "nf4":
        return nf4_levels(device)
    if name == "nf4_bounds":  # decision boundaries between neighbouring levels
        levels = _table("nf4", device)
        return (levels[:-1] + levels[1:]) / 2
    if name == "nf4_pairs":  # byte b -> (level[b >> 4], level[b & 15]) as one int64
        levels = _table("nf4", device)
        pairs = torch.stack([levels.repeat_interleave(16), levels.repeat(16)], dim=1)
        return pairs.contiguous().view(torch.int64).view(-1)
    if name == "dynamic":
        return dynamic_code(device)
    if name == "grid":
        return _grid_lookup(_table("dynamic", device))
    raise KeyError(name)


def nf4_levels_from_quantiles(offset: float = NF4_OFFSET) -> torch.Tensor:
    """Re-derive the NF4 levels from normal quantiles (paper §3, Eq. 4 and Appendix E),
    in float64: 8 positive levels at probabilities linspace(offset, 0.5, 9)[:-1], 7
    negative ones at linspace(offset, 0.5, 8)[:-1], and 0, each side divided by its max."""
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    return levels / levels.abs().max()


def dynamic_code(device=None) -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic code (256 sorted fp32 values in [-1, 1]).

    Dynamic tree quantization (Dettmers, 2015, arXiv 1511.04561): a sign, a decade
    10^-6 .. 10^0 and a linear fraction; decade k holds 2^k values, the midpoints of 2^k
    equal steps of [0.1, 1] times 10^(k-6), with both signs; plus 0 and 1. Computed with
    the same fp32 steps as bitsandbytes' ``create_dynamic_map()`` so the values agree
    bit for bit (the double-quantized absmax codes index into it).
    """
    parts = [torch.tensor([0.0, 1.0])]
    for k in range(7):
        edges = torch.linspace(0.1, 1.0, 2**k + 1, dtype=torch.float32)
        mids = (edges[:-1] + edges[1:]) / 2.0
        scale = 10.0 ** (k - 6)
        parts += [mids * scale, mids * -scale]
    return torch.cat(parts).sort().values.to(device)


@dataclasses.dataclass
class NF4Tensor:
    """A tensor quantized to NF4: packed codes plus the (double-quantized) block scales.

    With ``double_quant`` (the default), ``absmax`` holds uint8 codes into
    :func:`dynamic_code` and the block scales are
    ``dynamic_code[absmax] * absmax_scale[block // 256] + absmax_offset``; without it,
    ``absmax`` is the fp32 absmax itself and the last two fields are None.
    """

    packed: torch.Tensor  # uint8 (ceil(numel / 2),): two 4-bit codes per byte, high first
    absmax: torch.Tensor  # uint8 (or fp32 without double quantization), one per block
    shape: torch.Size  # logical shape of the quantized tensor
    dtype: torch.dtype  # dtype it had (what dequantize returns by default)
    blocksize: int = BLOCKSIZE
    absmax_scale: torch.Tensor | None = None  # fp32, one per 256 absmax values
    absmax_offset: torch.Tensor | None = None  # fp32 scalar, the mean of the absmax

    @property
    def numel(self) -> int:
        return self.shape.numel()

    @property
    def double_quant(self) -> bool:
        return self.absmax_scale is not None

    def nbytes(self) -> int:
        """Bytes held by the packed codes and statistics."""
        ts = (self.packed, self.absmax, self.absmax_scale, self.absmax_offset)
        return sum(t.numel() * t.element_size() for t in ts if t is not None)


# -- quantization ---------------------------------------------------------------------------
def _check_input(w: torch.Tensor, blocksize: int) -> None:
    if w.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"NF4 quantizes fp32, bf16 or fp16 tensors, got {w.dtype}")
    if w.numel() == 0:
        raise ValueError("cannot quantize an empty tensor")
    if blocksize <= 0 or blocksize % 2 or _CHUNK % blocksize:
        raise ValueError(f"blocksize must be a power of two from 2 to {_CHUNK}, got {blocksize}")


def _block_absmax_and_scaled(flat: torch.Tensor, blocksize: int):
    """Absmax of each block of ``flat`` (fp32) and the values divided by it, clamped to
    [-1, 1]; a short last block is padded with zeros, which leave its absmax unchanged."""
    n = flat.numel()
    blocks = F.pad(flat, (0, -n % blocksize)).view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    # Multiply by the reciprocal (as bitsandbytes does), not divide: the two differ in
    # the last bit now and then, which can move a value that sits on a level boundary.
    inv = 1.0 / absmax.clamp_min(_ABSMAX_FLOOR)
    scaled = (blocks * inv[:, None]).clamp_(-1.0, 1.0).view(-1)[:n]
    return absmax, scaled


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes (uint8, flat) two per byte: element 2j high, 2j+1 low; an odd
    count is completed with :data:`NF4_ZERO_CODE`."""
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_full((1,), NF4_ZERO_CODE)])
    pairs = codes.view(-1, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_nibbles(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: the first ``n`` codes as int64 indices."""
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=1).view(-1)[:n]
    return codes.long()


def quantize_nf4(
    w: torch.Tensor, blocksize: int = BLOCKSIZE, double_quant: bool = True
) -> NF4Tensor:
    """Quantize ``w`` (any shape; fp32, bf16 or fp16) to NF4 (QLoRA §3).

    Each block of ``blocksize`` consecutive values (row-major) is divided by its absmax
    and each value replaced by the nearest NF4 level; with ``double_quant`` the absmax
    values are then quantized to 8 bits (:func:`quantize_absmax`).
    """
    _check_input(w, blocksize)
    flat = w.detach().reshape(-1)
    bounds = _table("nf4_bounds", w.device)
    packed, absmax = [], []
    step = max(flat.numel(), 1) if w.is_meta else _CHUNK  # meta (planner): shapes only
    for start in range(0, flat.numel(), step):
        chunk = flat[start : start + step].float()
        am, scaled = _block_absmax_and_scaled(chunk, blocksize)
        # bucketize gives the number of boundaries < x: the nearest level, ties low.
        codes = torch.bucketize(scaled, bounds, out_int32=True).to(torch.uint8)
        packed.append(pack_nibbles(codes))
        absmax.append(am)
    absmax = torch.cat(absmax)
    out = NF4Tensor(torch.cat(packed), absmax, w.shape, w.dtype, blocksize)
    if double_quant:
        out.absmax, out.absmax_scale, out.absmax_offset = quantize_absmax(absmax)
    return out


def _grid_lookup(code: torch.Tensor) -> torch.Tensor:
    """For each of the :data:`_GRID_BINS` bins over [-1, 1], the code nearest its centre
    (the number of code midpoints below the centre)."""
    i = torch.arange(_GRID_BINS, dtype=torch.float32, device=code.device)
    centres = (i * 2.0) / (_GRID_BINS - 1) - 1.0
    midpoints = 0.5 * (code[:-1] + code[1:])
    return torch.searchsorted(midpoints, centres).to(torch.uint8)


def quantize_blockwise_8bit(x: torch.Tensor, blocksize: int = ABSMAX_BLOCKSIZE):
    """8-bit blockwise quantization of a flat fp32 tensor with :func:`dynamic_code`.

    Returns (uint8 codes, fp32 absmax per block). Rounding follows bitsandbytes' CPU
    kernel (see the module docstring); an all-zero block stores code 0 and absmax 0.
    """
    n = x.numel()
    blocks = F.pad(x.float(), (0, -n % blocksize)).view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    inv = torch.where(absmax > 0, 1.0 / absmax, torch.zeros_like(absmax))
    v = (blocks * inv[:, None]).clamp_(-1.0, 1.0)
    # The same fp32 steps as bitsandbytes: ((v + 1) · 0.5) · 65535 + 0.5, truncated.
    bins = ((v + 1.0) * 0.5 * (_GRID_BINS - 1) + 0.5).to(torch.int64)
    codes = _table("grid", x.device)[bins]
    codes[absmax == 0] = 0
    return codes.view(-1)[:n], absmax


def dequantize_blockwise_8bit(
    codes: torch.Tensor, absmax: torch.Tensor, blocksize: int = ABSMAX_BLOCKSIZE
) -> torch.Tensor:
    """fp32 values ``dynamic_code[codes] · absmax[block]`` (inverse of the above)."""
    n = codes.numel()
    scale = absmax.repeat_interleave(blocksize)[:n]
    return _table("dynamic", codes.device)[codes.long()] * scale


def quantize_absmax(absmax: torch.Tensor):
    """Double quantization (QLoRA §3): subtract the mean (the absmax values are all
    positive, so centring them uses the signed code's full range), then 8-bit blockwise
    quantization in blocks of 256. Returns (uint8 codes, fp32 scales, fp32 offset)."""
    offset = absmax.mean()
    codes, scale = quantize_blockwise_8bit(absmax - offset, ABSMAX_BLOCKSIZE)
    return codes, scale, offset


def block_absmax(q: NF4Tensor) -> torch.Tensor:
    """The fp32 absmax of every block (decoding the double quantization if used)."""
    if not q.double_quant:
        return q.absmax.float()
    # (code · scale) + offset in two fp32 roundings, as bitsandbytes computes it.
    return dequantize_blockwise_8bit(q.absmax, q.absmax_scale) + q.absmax_offset


# -- dequantization ---------------------------------------------------------------------------
def dequantize_nf4(
    q: NF4Tensor, dtype: torch.dtype | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The tensor ``q`` encodes: ``level[code] · absmax[block]`` in fp32, rounded once to
    ``dtype`` (default: the dtype that was quantized), shaped like the original.

    One gather per packed *byte* from a table of the 256 possible (high, low) level
    pairs (stored as one 8-byte entry each), then one multiply by the block scales; in
    chunks small enough for the cache (on the CPU, ~8x faster than splitting nibbles and
    gathering per value; BENCHMARKS.md). ``out`` (a contiguous tensor of the right size
    and dtype) is filled instead of allocating.
    """
    dtype = dtype or q.dtype
    n, bs = q.numel, q.blocksize
    if out is None:
        out = torch.empty(q.shape, dtype=dtype, device=q.packed.device)
    elif out.numel() != n or out.dtype != dtype or not out.is_contiguous():
        raise ValueError("out must be a contiguous tensor of the quantized size and dtype")
    flat = out.view(-1)
    pairs = _table("nf4_pairs", q.packed.device)
    absmax = block_absmax(q)
    chunk = _DEQUANT_CHUNK if q.packed.device.type == "cpu" else _DEQUANT_CHUNK_GPU
    if torch.compiler.is_compiling():
        chunk = n  # one piece: the compiler fuses the gather and the scaling itself
    step = max(chunk // bs, 1) * bs  # whole blocks (bs is even: whole bytes too)
    for start in range(0, n, step):
        stop = min(start + step, n)
        nb = -(-(stop - start) // bs)
        codes = q.packed[start // 2 : (stop + 1) // 2].int()
        vals = torch.index_select(pairs, 0, codes).view(torch.float32)
        am = absmax[start // bs : start // bs + nb, None]
        if vals.numel() != nb * bs or stop - start != nb * bs:  # a short last block
            blocks = F.pad(vals, (0, nb * bs - vals.numel())).view(nb, bs).mul_(am)
            flat[start:stop] = blocks.view(-1)[: stop - start]
        elif dtype == torch.float32:
            torch.mul(vals.view(nb, bs), am, out=flat[start:stop].view(nb, bs))
        else:
            flat[start:stop].view(nb, bs).copy_(vals.view(nb, bs).mul_(am))
    return out


def quantization_error(
    w: torch.Tensor, blocksize: int = BLOCKSIZE, double_quant: bool = True
) -> dict[str, float]:
    """Mean and max absolute round-trip error of NF4 on ``w`` (for reports and tests)."""
    err = (
        dequantize_nf4(quantize_nf4(w, blocksize, double_quant), torch.float32) - w.float()
    ).abs()
    return {"mean_abs": err.mean().item(), "max_abs": err.max().item()}
