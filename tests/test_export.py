"""GGUF export: the merged model read back by transformers' own GGUF loader (a reader
peftlab did not write) gives the merged model's logits, for every method; the tokenizer
and chat template survive; the llama.cpp LoRA adapter applied by an independent numpy
reference equals the merged export; Modelfile; atomic writes and refusals."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import peftlab
from peftlab.cli import main
from peftlab.formats.card import read_front_matter

gguf = pytest.importorskip("gguf")
TEXTS = [
    "Hello world!",
    "The year 2024 had 366 days.",
    "  spaces\tand\nnewlines ",
    "<|im_start|>user\nHi<|im_end|>",
    "naïve café — ünïcode ✓",
    "x = f(3) + 42;",
]


def train_run(tmp_path, model_dir, method, **kw):
    out = tmp_path / method
    args = dict(
        model=model_dir,
        output=str(out),
        method=method,
        max_steps=2,
        batch_size=2,
        lr=1e-2,
        mixed_precision="no",
        exact_match_limit=0,
        progress=False,
        max_length=48,
        max_eval_records=4,
        eval_every=0,
        save_every=0,
        seed=5,
    )
    args.update(kw)
    peftlab.train(**args)
    return out


def merged_logits(run, ids):
    from peftlab.model.inject import merge_and_unload

    model = merge_and_unload(peftlab.load_adapter(run)) if run else None
    with torch.no_grad():
        return model(input_ids=ids).logits


def gguf_model(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()


def read_tensors(path) -> dict[str, np.ndarray]:
    r = gguf.GGUFReader(str(path))
    return {t.name: np.array(t.data) for t in r.tensors}


def field(path, key):
    return gguf.GGUFReader(str(path)).fields[key].contents()


METHODS = [
    ("lora", {}),
    ("qlora", {}),
    ("dora", {}),
    ("adalora", {"tinit": 0, "tfinal": 1}),
    ("ia3", {}),
    ("full", {}),
    ("vera", {"r": 8}),
    ("oft", {"oft_block_size": 8}),
    ("loha", {}),
    ("lokr", {"r": 2}),
]


HEAVY = pytest.mark.skipif(
    not os.environ.get("PEFTLAB_HEAVY_TESTS"),
    reason="set PEFTLAB_HEAVY_TESTS=1: every method on the embedded "
    "model (~1 min each: a 515 MB f32 file written and read)",
)


@pytest.mark.parametrize(
    "model", ["tiny", pytest.param("embedded", marks=[pytest.mark.slow, HEAVY])]
)
@pytest.mark.parametrize("method,opts", METHODS, ids=[m for m, _ in METHODS])
def test_exported_f32_gguf_gives_the_merged_models_logits(
    tmp_path, tiny_model_dir, model, method, opts
):
    run = train_run(tmp_path, tiny_model_dir if model == "tiny" else None, method, **opts)
    out = tmp_path / "export" / f"{method}.gguf"
    res = peftlab.export(run, out, outtype="f32", progress=False)
    assert res["bytes"] == out.stat().st_size and not list(out.parent.glob(".*tmp"))
    ids = torch.tensor([[1, 4093, 198, 26843, 28, 638, 359, 346, 47, 2, 198]])
    if method == "full":
        model = peftlab.load_adapter(run)
        with torch.no_grad():
            want = model(input_ids=ids).logits
    else:
        want = merged_logits(run, ids)
    with torch.no_grad():
        got = gguf_model(out)(input_ids=ids).logits
    assert (got - want).abs().max() <= 1e-4


def rounded_like(model, outtype: str):
    """``model`` with every matrix rounded as ``outtype`` stores it (norms stay f32, as the
    export keeps them), through gguf's own quantize/dequantize: the model a correct
    reader of the file must reproduce, up to fp32 summation order."""
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    qtype = {"f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0}[outtype]
    with torch.no_grad():
        for p in {id(p): p for p in model.parameters()}.values():
            if p.dim() == 2:
                a = p.detach().float().numpy()
                back = quants.dequantize(quants.quantize(a, qtype), qtype)
                p.copy_(torch.from_numpy(np.ascontiguousarray(back)).reshape(p.shape))
    return model


@pytest.mark.slow
def test_embedded_model_round_trip_types_tokenizer_and_template(tmp_path, embedded_tokenizer):
    from transformers import AutoTokenizer

    from peftlab.model.inject import merge_and_unload

    run = train_run(tmp_path, None, "lora", prompt_format="chat")
    ids = torch.tensor([[1, 4093, 198, 26843, 28, 638, 359, 346, 47, 2, 198]])
    # f16, bf16 and q8_0 round the weights, so the reference is the merged model with
    # its matrices rounded the same way: the file must then give its logits to 1e-4.
    for outtype in ("f16", "bf16", "q8_0"):
        out = tmp_path / f"m-{outtype}.gguf"
        peftlab.export(run, out, outtype=outtype, progress=False)
        ref = rounded_like(merge_and_unload(peftlab.load_adapter(run)), outtype)
        with torch.no_grad():
            want = ref(input_ids=ids).logits
            got = gguf_model(out)(input_ids=ids).logits
        assert (got - want).abs().max() <= 1e-4, outtype
    tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file="m-f16.gguf")
    for text in TEXTS:
        assert tok(text)["input_ids"] == embedded_tokenizer(text)["input_ids"], text
    assert tok.chat_template == embedded_tokenizer.chat_template
    # The embedded tokenizer (as transformers builds it from the source GGUF) splits with
    # GPT-2's regex, so that is what the exported file must tell llama.cpp.
    assert field(tmp_path / "m-f16.gguf", "tokenizer.ggml.pre") == "gpt-2"
    assert field(tmp_path / "m-f16.gguf", "general.file_type") == 1  # MOSTLY_F16


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_gguf_applied_by_a_numpy_reference_equals_the_merged_export(
    tmp_path, tiny_model_dir, rslora
):
    run = train_run(
        tmp_path,
        tiny_model_dir,
        "lora",
        r=4,
        alpha=8,
        use_rslora=rslora,
        target_modules="all-linear",
    )
    base, merged, lora = (tmp_path / n for n in ("base.gguf", "merged.gguf", "lora.gguf"))
    peftlab.export(None, base, outtype="f32", progress=False, model=tiny_model_dir)
    peftlab.export(run, merged, outtype="f32", progress=False)
    peftlab.export(run, lora, format="gguf-lora", progress=False)
    assert field(lora, "general.type") == "adapter"
    assert field(lora, "adapter.type") == "lora"
    assert field(lora, "general.architecture") == "llama"
    alpha = field(lora, "adapter.lora.alpha")
    assert alpha == pytest.approx(2.0 * 4 if not rslora else 8 / 2 * 4)  # s * r
    W0, W1, L = read_tensors(base), read_tensors(merged), read_tensors(lora)
    pairs = sorted(k.removesuffix(".lora_a") for k in L if k.endswith(".lora_a"))
    assert len(pairs) == 2 * 7 and all(p.startswith("blk.") for p in pairs)
    for name in pairs:
        a, b = L[f"{name}.lora_a"], L[f"{name}.lora_b"]
        assert a.shape[0] == 4 and b.shape[1] == 4 and b.shape[0] == W0[name].shape[0]
        ref = W0[name] + alpha / a.shape[0] * (b @ a)
        np.testing.assert_allclose(ref, W1[name], atol=1e-5)
    changed = [n for n in pairs if not np.allclose(W0[n], W1[n], atol=1e-7)]
    assert changed  # the adapter is not the identity


def test_adapters_without_a_lora_form_are_refused(tmp_path, tiny_model_dir, capsys):
    run = train_run(tmp_path, tiny_model_dir, "dora", r=4)
    rc = main(
        [
            "export",
            "--adapter",
            str(run),
            "--format",
            "gguf-lora",
            "--output",
            str(tmp_path / "x.gguf"),
            "--no-progress",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "dora adapters have no llama.cpp LoRA form" in err and "--format gguf" in err
    assert not (tmp_path / "x.gguf").exists()


def test_interrupted_export_leaves_no_file_and_existing_files_are_kept(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    from peftlab.formats import gguf as G

    run = train_run(tmp_path, tiny_model_dir, "lora", r=4)
    out = tmp_path / "out" / "m.gguf"
    calls = {"n": 0}
    real = G.encode_tensor

    def failing(t, qtype):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(t, qtype)

    monkeypatch.setattr(G, "encode_tensor", failing)
    with pytest.raises(OSError, match="No space left"):
        peftlab.export(run, out, progress=False)
    assert list(out.parent.iterdir()) == []
    monkeypatch.setattr(G, "encode_tensor", real)
    out.write_bytes(b"precious")
    assert main(["export", "--adapter", str(run), "--output", str(out), "--no-progress"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert (
        main(
            [
                "export",
                "--adapter",
                str(run),
                "--output",
                str(out),
                "--overwrite",
                "--modelfile",
                "--no-progress",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert out.read_bytes()[:4] == b"GGUF" and res["modelfile"] == str(out.parent / "Modelfile")
    card = read_front_matter(out.parent / "README.md")  # the GGUF's model card beside it
    assert res["card"] == str(out.parent / "README.md") and card["tags"] == [
        "lora",
        "peftlab",
        "gguf",
    ]
    assert card["base_model"] == tiny_model_dir and card["library_name"] == "gguf"
    assert "llama-cli -m m.gguf" in (out.parent / "README.md").read_text()


def test_unsupported_architecture_is_named():
    from transformers import GPT2Config

    from peftlab.formats.gguf import UnsupportedModelError, check_supported

    with pytest.raises(UnsupportedModelError, match="Llama family.*not model type 'gpt2'"):
        check_supported(GPT2Config())


@pytest.mark.slow
def test_llama_cpp_runs_the_export_as_peftlab_generates(tmp_path):
    """Opt-in: needs a llama.cpp runtime (pip install llama-cpp-python and diskcache;
    the sdist compiles llama.cpp, ~7 min on 2 cores); the greedy text of the exported f32
    file in llama.cpp equals peftlab generate's."""
    llama_cpp = pytest.importorskip(
        "llama_cpp",
        reason="no llama.cpp runtime installed "
        "(pip install llama-cpp-python builds it from source)",
    )
    run = train_run(tmp_path, None, "lora", prompt_format="chat")
    out = tmp_path / "m.gguf"
    peftlab.export(run, out, outtype="f32", progress=False)
    question = "What is the capital of France? Answer with one word."
    ours = peftlab.generate(
        question, adapter=run, chat=True, max_new_tokens=16, mixed_precision="no"
    )[0]
    tok = peftlab.api.open_session(
        peftlab.api.config_for_adapter(run), adapter_dir=run, with_data=False
    ).prompt
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=256, verbose=False)
    theirs = llm.create_completion(
        tok.user_prompt(question), max_tokens=16, temperature=0.0, stop=["<|im_end|>"]
    )["choices"][0]["text"]
    assert ours.strip() and theirs == ours
