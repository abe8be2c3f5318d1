"""Liger-Kernel behind ``--kernels`` (``model/kernels.py``): the choice per device,
model family and installation on any machine; Liger's numbers against the plain path
where a CUDA device and liger-kernel are there (skipped elsewhere, with the reason)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from peftlab.config import build_config
from peftlab.model.kernels import (
    CHOICES,
    KernelChoice,
    apply_kernels,
    liger_installed,
    resolve_kernels,
)

from conftest import make_tiny_llama


def test_auto_is_none_on_the_cpu_and_says_why():
    for installed in (False, True):
        c = resolve_kernels("auto", "cpu", "llama", installed)
        assert c == KernelChoice("none", c.why) and "CUDA" in c.why


def test_auto_picks_liger_on_cuda_only_when_installed_and_the_family_fits():
    assert resolve_kernels("auto", "cuda", "llama", True).name == "liger"
    assert resolve_kernels("auto", "cuda", "qwen2", True).name == "liger"
    missing = resolve_kernels("auto", "cuda", "llama", False)
    assert missing.name == "none" and "peftlab[gpu]" in missing.why
    other = resolve_kernels("auto", "cuda", "gpt2", True)
    assert other.name == "none" and "gpt2" in other.why


@pytest.mark.parametrize(
    "device, mtype, installed, says",
    [
        ("cpu", "llama", True, "need a CUDA device; this run is on cpu"),
        ("cuda", "llama", False, "pip install 'peftlab\\[gpu\\]'"),
        ("cuda", "gpt2", True, "model type 'gpt2'"),
    ],
)
def test_liger_asked_where_it_cannot_run_is_a_clear_error(device, mtype, installed, says):
    with pytest.raises(ValueError, match=f"--kernels liger: .*{says}"):
        resolve_kernels("liger", device, mtype, installed)


def test_none_is_none_everywhere_and_a_bad_value_is_refused():
    assert resolve_kernels("none", "cuda", "llama", True).name == "none"
    assert CHOICES == ("auto", "liger", "none")
    with pytest.raises(ValueError, match="'kernels' must be"):
        resolve_kernels("triton", "cuda", "llama", True)
    with pytest.raises(ValueError, match="'kernels' must be auto, liger or none"):
        build_config(kernels="triton")
    assert build_config(kernels="none").train.kernels == "none"


def test_none_leaves_the_model_as_it_is(tiny_inputs):
    model = make_tiny_llama()
    before = model(**tiny_inputs).logits
    apply_kernels(model, KernelChoice("none", "asked"))
    assert not any("forward" in vars(m) for m in model.modules())
    assert torch.equal(model(**tiny_inputs).logits, before)


def test_a_cpu_training_run_records_the_resolved_choice(tmp_path, tiny_model_dir):
    import yaml

    from peftlab import train

    from conftest import write_toy_dataset

    cfg = build_config(
        model=tiny_model_dir,
        dataset=write_toy_dataset(tmp_path / "toy.json"),
        output=str(tmp_path / "run"),
        max_steps=1,
        batch_size=4,
        r=2,
        mixed_precision="no",
        exact_match_limit=0,
        progress=False,
        max_length=48,
    )
    train(cfg)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["kernels"] == "none"


GPU_REASON = (
    "Liger-Kernel's kernels are Triton: they need a CUDA device and liger-kernel "
    "(pip install 'peftlab[gpu]')"
)
needs_liger = pytest.mark.skipif(
    not (torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None),
    reason=GPU_REASON,
)


@needs_liger
def test_liger_logits_and_loss_match_the_plain_path():
    """On CUDA, fp32: the tiny Llama's logits with Liger's RMSNorm, RoPE and SwiGLU within
    1e-4 of the plain model's, and the fused linear cross-entropy's summed NLL within
    1e-4 relative of the plain head's (both fp32 softmax); the hidden states' gradient
    within 1e-4 too."""
    from peftlab.training.loss import head_nll

    assert liger_installed()
    plain, liger = make_tiny_llama().cuda(), make_tiny_llama().cuda()
    apply_kernels(liger, resolve_kernels("liger", "cuda", "llama", True))
    ids = torch.randint(3, 128, (2, 24), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        a, b = plain(input_ids=ids).logits, liger(input_ids=ids).logits
    assert torch.allclose(a, b, rtol=0, atol=1e-4)
    hidden = torch.randn(40, 32, device="cuda", requires_grad=True)
    targets = torch.randint(0, 128, (40,), device="cuda")
    nll = {}
    for fused in (False, True):
        h = hidden.detach().clone().requires_grad_(True)
        nll[fused] = head_nll(plain.lm_head, h, targets, chunk=0, fused=fused)
        nll[fused].backward()
        nll[(fused, "grad")] = h.grad
    assert torch.allclose(nll[True], nll[False], rtol=1e-4)
    assert torch.allclose(nll[(True, "grad")], nll[(False, "grad")], rtol=1e-3, atol=1e-4)
