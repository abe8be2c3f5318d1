"""``peftlab merge --requantize``: the merged QLoRA model, NF4 again, saved in the
bitsandbytes 4-bit format; transformers + bitsandbytes load it and compute our logits."""

from __future__ import annotations

import json

import pytest
import torch

from peftlab import merge, train
from peftlab.cli import main as cli_main
from peftlab.core.modules import linear_names_but_head
from peftlab.model.load import load_model
from peftlab.quant.linear4bit import Linear4bit, quantize_linears
from test_train import toy_config

from conftest import make_tiny_llama


@pytest.fixture(scope="module")
def wide_qlora_run(tmp_path_factory, embedded_tokenizer):
    """A few QLoRA steps on a tiny Llama wide enough (hidden 64) for bitsandbytes' CPU
    4-bit matmul, which needs rows of at least one 64-value block."""
    tmp = tmp_path_factory.mktemp("requant")
    tok = embedded_tokenizer
    base = tmp / "base"
    make_tiny_llama(
        hidden_size=64,
        intermediate_size=128,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    ).save_pretrained(base)
    tok.save_pretrained(base)
    train(
        toy_config(
            tmp,
            str(base),
            method="qlora",
            max_steps=3,
            dropout=0.0,
            save_every=0,
            lr=2e-2,
            exact_match_limit=0,
        )
    )
    return tmp / "run"


def test_requantized_merge_loads_in_transformers_with_bitsandbytes(
    wide_qlora_run, tmp_path, tiny_inputs
):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes loads the 4-bit checkpoint")
    from transformers import AutoModelForCausalLM

    plain = merge(wide_qlora_run, tmp_path / "merged", dtype="float32")
    res = merge(wide_qlora_run, tmp_path / "merged-nf4", dtype="float32", requantize=True)
    # The second quantization costs accuracy, and it is measured and reported.
    assert res["requantize_max_logit_diff"] > res["max_logit_diff"]
    assert res["max_logit_diff"] == pytest.approx(plain["max_logit_diff"])
    cfg = json.loads((tmp_path / "merged-nf4" / "config.json").read_text())
    assert cfg["quantization_config"]["bnb_4bit_quant_type"] == "nf4"

    # Our reference: the fp32 merged model quantized by peftlab.
    ours = load_model(str(tmp_path / "merged"))
    quantize_linears(ours, linear_names_but_head(ours), torch.float32)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "merged-nf4", device_map="cpu")
    q = theirs.model.layers[1].mlp.down_proj
    assert type(q).__name__ == "Linear4bit" and q.weight.quant_state.nested
    mine = ours.model.layers[1].mlp.down_proj
    assert isinstance(mine, Linear4bit)
    assert torch.equal(q.weight.data.view(-1), mine.packed)
    # Train mode: in eval mode bitsandbytes may repack for a bf16 CPU kernel (~1e-3).
    theirs.train()
    with torch.no_grad():
        diff = (theirs(**tiny_inputs).logits - ours(**tiny_inputs).logits).abs().max()
    assert diff <= 1e-5


def test_cli_merge_requantize_prints_the_error(wide_qlora_run, tmp_path, capsys):
    assert (
        cli_main(
            [
                "merge",
                "--adapter",
                str(wide_qlora_run),
                "--output",
                str(tmp_path / "m"),
                "--requantize",
                "--dtype",
                "bfloat16",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "re-quantized to NF4" in out.err
    assert json.loads(out.out)["requantize_max_logit_diff"] > 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".m.tmp-*"))
