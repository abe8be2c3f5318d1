"""NF4 quantization (QLoRA, arXiv 2305.14314 §3) against the paper and bitsandbytes."""

from __future__ import annotations

import pytest
import torch

from peftlab.quant import nf4
from peftlab.quant.nf4 import (
    NF4_LEVELS,
    NF4_ZERO_CODE,
    dequantize_nf4,
    dynamic_code,
    nf4_levels,
    nf4_levels_from_quantiles,
    quantize_nf4,
)

# bitsandbytes' mean absolute round-trip error on torch.randn(1024, 1024) (seed 0), NF4
# with double quantization, measured on this CPU (bitsandbytes 0.50): the reference the
# issue names when bitsandbytes is not installed.
BNB_REFERENCE_ERROR = 0.0728038


def randn(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


def bnb_functional():
    return pytest.importorskip(
        "bitsandbytes.functional", reason="bitsandbytes is the reference implementation"
    )


def bnb_round_trip(w):
    F = bnb_functional()
    packed, state = F.quantize_4bit(w, quant_type="nf4", compress_statistics=True, blocksize=64)
    return packed, state, F.dequantize_4bit(packed, state).reshape(w.shape)


# -- the code -------------------------------------------------------------------------------
def test_levels_are_the_papers_normal_quantiles():
    derived = nf4_levels_from_quantiles()
    assert len(NF4_LEVELS) == 16 and NF4_LEVELS[NF4_ZERO_CODE] == 0.0
    assert torch.allclose(derived.float(), nf4_levels(), atol=2e-7, rtol=0)
    assert torch.all(nf4_levels().diff() > 0)


def test_dynamic_code_equals_bitsandbytes():
    F = bnb_functional()
    code = dynamic_code()
    assert code.numel() == 256 and code[-1] == 1.0 and (code == 0).sum() == 1
    assert torch.equal(code, F.create_dynamic_map())


# -- round trip -------------------------------------------------------------------------------
def test_round_trip_error_within_one_percent_of_bitsandbytes():
    w = randn(1024, 1024)
    err = (dequantize_nf4(quantize_nf4(w)) - w).abs().mean().item()
    try:
        ref = (bnb_round_trip(w)[2] - w).abs().mean().item()
    except pytest.skip.Exception:
        ref = BNB_REFERENCE_ERROR
    assert ref == pytest.approx(BNB_REFERENCE_ERROR, rel=0.01)
    assert err == pytest.approx(ref, rel=0.01)


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((1024, 1024), torch.float32),
        ((256, 192), torch.bfloat16),
        ((64, 130), torch.float16),
        ((1000,), torch.float32),
        ((37, 33), torch.float32),
        ((3,), torch.float32),
        ((5000, 70), torch.float32),
    ],
    ids=["1024x1024", "bf16", "fp16", "tail-1000", "tail-odd-1221", "three", "tail-multi"],
)
def test_packed_data_and_dequantized_equal_bitsandbytes(shape, dtype):
    w = randn(*shape, dtype=dtype)
    if len(shape) == 2:
        w[1] = 0  # whole zero blocks (and a zero row) must encode the same way too
    packed, state, deq = bnb_round_trip(w)
    q = quantize_nf4(w)
    assert torch.equal(q.packed, packed.view(-1))
    assert torch.equal(q.absmax, state.absmax)  # the 8-bit absmax codes
    assert torch.equal(q.absmax_scale, state.state2.absmax)
    assert torch.equal(q.absmax_offset, state.offset)
    ours = dequantize_nf4(q)
    assert ours.dtype == dtype == deq.dtype and ours.shape == w.shape
    assert torch.equal(ours, deq)


def test_without_double_quant_absmax_is_exact_and_equals_bitsandbytes():
    F = bnb_functional()
    w = randn(300, 64)
    q = quantize_nf4(w, double_quant=False)
    assert q.absmax.dtype == torch.float32 and q.absmax_scale is None
    assert torch.equal(q.absmax, w.reshape(-1, 64).abs().amax(1))
    packed, state = F.quantize_4bit(w, quant_type="nf4", compress_statistics=False, blocksize=64)
    assert torch.equal(q.packed, packed.view(-1))
    assert torch.equal(dequantize_nf4(q), F.dequantize_4bit(packed, state))


# -- layout and edge cases -------------------------------------------------------------------
def test_nibble_order_high_first():
    # One block holding the 16 levels themselves, times 4 blocks: codes 0..15 in order.
    w = nf4_levels().repeat(4) * 3.0
    q = quantize_nf4(w, double_quant=False)
    expected = torch.tensor([(2 * j) << 4 | (2 * j + 1) for j in range(8)], dtype=torch.uint8)
    assert torch.equal(q.packed, expected.repeat(4))
    assert torch.equal(dequantize_nf4(q), w)  # the levels themselves round-trip exactly


def test_zero_block_dequantizes_to_exact_zero():
    w = randn(4, 64)
    w[2] = 0.0
    q = quantize_nf4(w)
    codes = nf4.unpack_nibbles(q.packed, w.numel()).view(4, 64)
    assert torch.all(codes[2] == NF4_ZERO_CODE)
    assert torch.all(dequantize_nf4(q)[2] == 0.0)
    assert torch.equal(dequantize_nf4(quantize_nf4(torch.zeros(128))), torch.zeros(128))


def test_size_not_multiple_of_64_ends_in_a_short_block_with_its_own_scale():
    # Documented choice: no error and no padding of the statistics; the last block holds
    # the remaining 6 values and is scaled by their own absmax, so small tail values
    # are not crushed by a large neighbouring block.
    w = torch.cat([randn(64) * 100, randn(6, seed=1) * 0.01])
    q = quantize_nf4(w, double_quant=False)
    assert q.absmax.numel() == 2 and q.absmax[1] == w[64:].abs().max()
    rel = ((dequantize_nf4(q) - w)[64:].abs() / w[64:].abs().max()).max()
    assert rel < 0.1  # within half an NF4 step of its own block
    odd = quantize_nf4(randn(3))  # odd size: one pad nibble holding the zero code
    assert odd.packed.numel() == 2 and (odd.packed[1] & 0x0F) == NF4_ZERO_CODE


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_round_trip_in_their_dtype(dtype):
    w = randn(128, 128, dtype=dtype)
    q = quantize_nf4(w)
    assert q.dtype == dtype
    assert dequantize_nf4(q).dtype == dtype
    assert dequantize_nf4(q, torch.float32).dtype == torch.float32
    err = (dequantize_nf4(q, torch.float32) - w.float()).abs().mean().item()
    assert err == pytest.approx(BNB_REFERENCE_ERROR, rel=0.05)


def test_chunked_processing_changes_nothing(monkeypatch):
    w = randn(40, 100)
    whole = quantize_nf4(w)
    monkeypatch.setattr(nf4, "_CHUNK", 256)  # 16 chunks, the last one short
    chunked = quantize_nf4(w)
    assert torch.equal(whole.packed, chunked.packed)
    assert torch.equal(whole.absmax, chunked.absmax)
    assert torch.equal(dequantize_nf4(whole), dequantize_nf4(chunked))


def test_dequantize_into_given_buffer():
    q = quantize_nf4(randn(64, 64))
    out = torch.empty(64, 64, dtype=torch.bfloat16)
    assert dequantize_nf4(q, torch.bfloat16, out=out) is out
    assert torch.equal(out, dequantize_nf4(q, torch.bfloat16))
    with pytest.raises(ValueError, match="contiguous"):
        dequantize_nf4(q, torch.float32, out=out)


def test_storage_is_about_4_13_bits_per_weight():
    w = randn(4096, 1024)
    bits = 8 * quantize_nf4(w).nbytes() / w.numel()
    plain = 8 * quantize_nf4(w, double_quant=False).nbytes() / w.numel()
    # 4 + 8/64 + 32/(64·256) with double quantization; 4 + 32/64 without (paper §3).
    assert bits == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=1e-3)
    assert plain == pytest.approx(4.5, abs=1e-3)


def test_bad_inputs_are_refused():
    with pytest.raises(TypeError, match="fp32, bf16 or fp16"):
        quantize_nf4(torch.ones(64, dtype=torch.int32))
    with pytest.raises(ValueError, match="empty"):
        quantize_nf4(torch.ones(0))
    with pytest.raises(ValueError, match="blocksize"):
        quantize_nf4(torch.ones(64), blocksize=48)
