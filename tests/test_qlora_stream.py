"""QLoRA's quantize-while-loading (peftlab.quant.stream): same model as load-then-quantize,
clear errors, and peak memory of about the 4-bit model plus one tensor."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from peftlab.methods import get_method

from conftest import make_tiny_llama


def save_sharded(model, path, dtype=torch.bfloat16, shard="20KB"):
    model.to(dtype).save_pretrained(path, max_shard_size=shard)  # several shards
    return path


@pytest.mark.parametrize("tied", [False, True])
def test_streaming_load_equals_load_then_quantize(tmp_path, tiny_inputs, tied):
    from peftlab.model.load import load_model
    from peftlab.quant.stream import checkpoint_files, load_quantized

    path = save_sharded(make_tiny_llama(tie_word_embeddings=tied), tmp_path)
    assert len(checkpoint_files(path)) > 1
    streamed = load_quantized(path, dtype=torch.float32)
    ref = load_model(str(path), dtype=torch.float32)
    get_method("qlora").prepare_model(ref)
    assert streamed.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(streamed.state_dict()[k], v), k
    assert (streamed.lm_head.weight is streamed.model.embed_tokens.weight) == tied
    with torch.no_grad():
        assert torch.equal(streamed(**tiny_inputs).logits, ref(**tiny_inputs).logits)


def test_streaming_load_names_unknown_and_missing_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    from peftlab.quant.stream import load_quantized

    make_tiny_llama().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    save_file({**tensors, "model.extra.weight": torch.ones(2)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.extra\.weight matches no parameter"):
        load_quantized(tmp_path)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"no value for model\.layers\.1\.mlp\.down_proj"):
        load_quantized(tmp_path)


_PEAK_SCRIPT = """
import sys, torch
from peftlab.model.load import load_model
from peftlab.methods import get_method
from peftlab.host import reclaim
from peftlab.quant.stream import _skeleton, load_quantized

def status(key):  # KiB
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))

_skeleton(sys.argv[1], torch.float32, False)  # imports and code paths warmed up
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM): imports peak above what they keep
before = status("VmRSS")
if sys.argv[2] == "stream":
    load_quantized(sys.argv[1], dtype=torch.float32, reclaim=reclaim)  # as the session loads
else:
    get_method("qlora", stream_load=False).prepare_model(load_model(sys.argv[1]))
print((status("VmHWM") - before) * 1024)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="reads peak memory as Linux reports it (ru_maxrss in KiB)",
)
def test_streaming_load_peak_memory_is_4bit_model_plus_one_tensor(tmp_path):
    big = dict(
        vocab_size=256,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=8,
    )
    model = make_tiny_llama(**big)
    fp32 = sum(p.numel() * 4 for p in model.parameters())  # ~150 MB
    largest = max(p.numel() * 4 for p in model.parameters())
    # A bf16 checkpoint loaded as fp32 (peftlab's default dtype): transformers then holds
    # a converted copy (an fp32 checkpoint it would map from the file without copying).
    save_sharded(model, tmp_path, torch.bfloat16, shard="40MB")
    del model
    peak = {}
    for mode in ("stream", "full"):
        out = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        peak[mode] = int(out.stdout.split()[-1])
    fourbit = fp32 * 4.13 / 32
    assert peak["full"] > fp32  # the ordinary route holds the fp32 model at some point
    # ~ the 4-bit model + one fp32 tensor (+ its bytes as read) + chunk temporaries
    assert peak["stream"] < fourbit + 2 * largest + 48e6, peak
    assert peak["stream"] < 0.5 * peak["full"], peak
