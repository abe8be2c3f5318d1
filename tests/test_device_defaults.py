"""Device-aware defaults (issue 27): the token budget and loss chunk a run leaves unset,
resolved from the device kind, its free memory and the planner's prediction (fake
numbers here: the rule is pure); ``peftlab plan`` with a comparison config and the
seed's model known offline."""

from __future__ import annotations

import json

import pytest
import yaml

from peftlab.cli import main
from peftlab.config import build_config
from peftlab.memory.shapes import model_config, shape_of
from peftlab.methods import get_method
from peftlab.training.defaults import (
    CPU_LOSS_CHUNK,
    CPU_TOKEN_BUDGET,
    GPU_LOSS_CHUNK,
    apply_defaults,
    gpu_options,
    resolve_defaults,
    sized_chunk,
)
from peftlab.training.distributed import Dist

GiB = 1 << 30


class FakePlan:
    """A plan whose peak is fixed bytes plus activations per piece token plus logits per
    loss position (half the piece's tokens carry loss)."""

    def __init__(self, fixed, per_token, full_tokens=8 * 512, logit_bytes=50_000 * 11):
        self.fixed, self.per_token = fixed, per_token
        self.full_tokens, self.logit_bytes = full_tokens, logit_bytes
        self.asked = []

    def peak(self, token_budget, loss_chunk):
        self.asked.append((token_budget, loss_chunk))
        tokens = token_budget or self.full_tokens
        positions = tokens // 2 if not loss_chunk else min(loss_chunk, tokens // 2)
        return self.fixed + self.per_token * tokens + positions * self.logit_bytes


def test_cpu_defaults_are_unchanged_and_explicit_values_kept():
    plan = FakePlan(100 * GiB, GiB)  # would not fit anything: the CPU never asks
    d = resolve_defaults("cpu", 1 * GiB, plan)
    assert (d.token_budget, d.loss_chunk) == (CPU_TOKEN_BUDGET, CPU_LOSS_CHUNK) == (2048, 256)
    assert plan.asked == []
    d = resolve_defaults("cpu", None, None, token_budget=0, loss_chunk=64)
    assert (d.token_budget, d.loss_chunk) == (0, 64)


def test_gpu_with_room_takes_one_piece_and_the_whole_loss():
    plan = FakePlan(10 * GiB, 1 << 20)  # 10 GiB + 4 GiB of activations + ~1 GiB logits
    d = resolve_defaults("cuda", 80 * GiB, plan, margin=0.8)
    assert (d.token_budget, d.loss_chunk) == (0, 0)
    assert d.peak == plan.peak(0, 0) and plan.asked[0] == (0, 0)
    unknown = resolve_defaults("cuda", None, None)
    assert (unknown.token_budget, unknown.loss_chunk) == (0, GPU_LOSS_CHUNK)


def test_gpu_short_of_memory_chunks_the_loss_then_cuts_to_the_largest_budget_that_fits():
    free, margin = 20 * GiB, 0.8
    room = free * margin
    big = 128_000 * 11  # a 128k vocabulary: 2.7 GiB of logits for 2,048 loss positions
    chunk = sized_chunk(room, big)
    assert chunk % 256 == 0 and chunk * big <= room * 0.125 < (chunk + 256) * big
    # Fits uncut only with the loss in chunks: 9.5 GiB + 4 GiB + a chunk's logits.
    plan = FakePlan(int(9.5 * GiB), 1 << 20, logit_bytes=big)
    d = resolve_defaults("cuda", free, plan, margin=margin)
    assert (d.token_budget, d.loss_chunk) == (0, chunk)
    assert plan.peak(0, 0) > room >= d.peak
    # Activations of 4 MiB per token: 16 GiB uncut; 1,024-token pieces are the largest
    # that fit (2,048 would take 9 GiB + 8 GiB + 0.5 GiB of logits).
    plan = FakePlan(9 * GiB, 4 << 20)
    d = resolve_defaults("cuda", free, plan, margin=margin)
    assert d.token_budget == 1024 and d.peak <= room
    assert plan.peak(2048, chunk) > room and plan.peak(2048, 0) > room
    # Nothing fits: the smallest prediction, said so.
    plan = FakePlan(40 * GiB, 1 << 20)
    d = resolve_defaults("cuda", free, plan, margin=margin)
    assert d.token_budget == 256 and "no setting" in d.why
    # A value the run set is kept: only the other is searched.
    d = resolve_defaults("cuda", free, FakePlan(12 * GiB, 1 << 20), token_budget=2048)
    assert d.token_budget == 2048 and d.loss_chunk == 0


def test_gpu_options_order_is_fastest_first():
    opts = gpu_options(4096, 1024, None, None)
    assert opts[:4] == [(0, 0), (0, 1024), (2048, 0), (2048, 1024)]
    assert opts[-1] == (256, 1024)
    assert gpu_options(4096, 1024, 512, 64) == [(512, 64)]


def test_a_cpu_run_resolves_to_the_cpu_defaults_and_saves_them():
    cfg = build_config()
    assert cfg.train.token_budget is None and cfg.train.loss_chunk is None
    apply_defaults(cfg, Dist())
    assert (cfg.train.token_budget, cfg.train.loss_chunk) == (2048, 256)
    assert cfg.to_dict()["train"]["token_budget"] == 2048
    cfg = build_config(token_budget=0)
    apply_defaults(cfg, Dist())
    assert (cfg.train.token_budget, cfg.train.loss_chunk) == (0, 256)


def test_the_seeds_model_is_known_offline():
    c = model_config("mistralai/Mistral-7B-Instruct-v0.1")
    assert (c.vocab_size, c.hidden_size, c.intermediate_size) == (32000, 4096, 14336)
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (32, 32, 8)
    assert (c.max_position_embeddings, c.sliding_window) == (32768, 4096)
    assert c.rope_parameters["rope_theta"] == 10000.0
    assert model_config("mistralai/Mistral-7B-Instruct-v0.2").sliding_window is None
    import torch

    shape = shape_of(c, get_method("lora"), torch.bfloat16)
    assert shape.total_params - shape.trainable == 7_241_732_096  # Mistral-7B, published


@pytest.fixture
def compare_yaml(tmp_path, tiny_model_dir):
    path = tmp_path / "cmp.yaml"
    data = {
        "methods": ["lora", "ia3"],
        "model": tiny_model_dir,
        "batch_size": 4,
        "max_length": 256,
        "exact_match_limit": 0,
        "lora": {"r": 4},
        "seeds": 2,  # the harness's own key: plan ignores it
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_plan_takes_a_comparison_config(compare_yaml, capsys):
    assert main(["plan", "--config", compare_yaml, "--no-data", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["methods"]) == ["lora", "ia3"]
    lora, ia3 = res["methods"]["lora"], res["methods"]["ia3"]
    assert lora["settings"]["trainable"] != ia3["settings"]["trainable"]
    assert lora["settings"]["token_budget"] == 2048  # this machine: the CPU's defaults
    assert main(["plan", "--config", compare_yaml, "--no-data", "--set", "train.r=8"]) == 2


def test_plan_fit_on_a_named_gpu_follows_the_gpu_rule(compare_yaml, capsys):
    args = ["plan", "--config", compare_yaml, "--no-data", "--fit", "h100", "--json"]
    assert main([*args, "--methods", "lora"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["device"] == "cuda" and list(res["methods"]) == ["lora"]
    st = res["methods"]["lora"]["settings"]
    assert (st["token_budget"], st["loss_chunk"], st["gradient_checkpointing"]) == (0, 0, False)
    capsys.readouterr()
    assert main([*args[:-1], "--set", "train.token_budget=512"]) == 0
    assert "budget 512, loss chunk off, checkpointing off" in capsys.readouterr().out
