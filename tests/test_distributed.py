"""Several processes (DDP over gloo on CPU): N processes x batch b train exactly as one
process x batch N*b, checkpoints move between process counts, evaluation is gathered.

The multi-process runs are real launches (``peftlab train --num-processes 2`` and
``accelerate launch``) of a tiny random Llama, fp32, no dropout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from peftlab import build_config, train
from peftlab.cli import _drop_option
from peftlab.data.batching import IGNORE, Example
from peftlab.training.distributed import Dist
from peftlab.training.loop import _step_batches
from peftlab.training.plan import make_plan

from conftest import write_toy_dataset

TOL = 1e-5
LAUNCH_TIMEOUT_S = 300


def _options(model_dir, data, output, **kw) -> dict:
    base = dict(
        model=model_dir,
        dataset=data,
        output=str(output),
        max_steps=4,
        batch_size=4,
        lr=5e-3,
        r=4,
        alpha=8,
        dropout=0.0,
        mixed_precision="no",
        save_every=2,
        keep_checkpoints=2,
        exact_match_limit=2,
        max_new_tokens=3,
        progress=False,
        max_length=64,
        seed=11,
        eval_batch_size=2,
        device="cpu",
    )
    base.update(kw)
    return base


def _flags(opts: dict) -> list[str]:
    out = []
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, str(value)]
    return out


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]


def train_two_processes(opts: dict) -> None:
    """``peftlab train --num-processes 2`` (batch_size is per process)."""
    _run([sys.executable, "-m", "peftlab", "train", "--num-processes", "2", *_flags(opts)])


ACCELERATE_TWO = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--main_process_port",
    "0",
]
"""``accelerate launch`` of 2 CPU processes (free port: 0), up to the script to run."""


def accelerate_launch_two(opts: dict) -> None:
    """The same through ``accelerate launch`` directly."""
    _run([*ACCELERATE_TWO, "-m", "peftlab", "train", *_flags(opts)])


def losses(run: Path) -> dict[int, float]:
    recs = [json.loads(x) for x in open(run / "metrics.jsonl")]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


def ckpt(run: Path, step: int, name: str) -> dict:
    return load_file(run / "checkpoints" / f"step-{step:06d}" / f"{name}.safetensors")


def resume_copy(src: Path, dst: Path, step: int) -> None:
    """A run directory holding only ``src``'s checkpoint of ``step`` (and its metrics)."""
    name = f"step-{step:06d}"
    shutil.copytree(src / "checkpoints" / name, dst / "checkpoints" / name)
    shutil.copy(src / "metrics.jsonl", dst / "metrics.jsonl")
    shutil.copy(src / "peftlab-run.json", dst / "peftlab-run.json")  # the run's marker


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory, tiny_model_dir):
    """LoRA, 4 steps of 3 micro-batches (a whole epoch): one process x batch 4 (in this
    process) and 2 processes x batch 2. 41 train records in global batches of 4 leave one
    batch of a single row, for which the second process runs a stand-in."""
    root = tmp_path_factory.mktemp("ddp-lora")
    data = write_toy_dataset(root / "toy.json", n=46)  # 41 train, 5 eval records
    one = _options(tiny_model_dir, data, root / "one", grad_accum=3)
    train(build_config(**one))
    two = {**one, "output": str(root / "two"), "batch_size": 2}
    train_two_processes(two)
    return {"root": root, "one": root / "one", "two": root / "two", "opts": one}


def test_two_processes_train_as_one_with_twice_the_batch(lora_runs):
    one, two = lora_runs["one"], lora_runs["two"]
    a, b = losses(one), losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=TOL), step
    for step in (2, 4):
        assert max_diff(*(ckpt(r, step, "adapter_params") for r in (one, two))) <= TOL
    wa, wb = (load_file(r / "adapter_model.safetensors") for r in (one, two))
    assert any(wa[k].abs().max() > 0 for k in wa if "lora_B" in k)  # really trained
    assert max_diff(wa, wb) <= TOL
    assert not any(k.startswith("module.") or ".module." in k for k in wb)
    res = json.loads((two / "results.json").read_text())
    assert res["processes"] == 2 and res["plan"]["processes"] == 2
    assert (res["plan"]["micro_per_epoch"], res["plan"]["steps_per_epoch"]) == (11, 4)


def test_perplexity_gathered_over_processes_equals_one_process(lora_runs):
    # 5 eval records in batches of 2: 3 batches, so the two processes get 2 and 1.
    r1, r2 = (json.loads((lora_runs[k] / "results.json").read_text()) for k in ("one", "two"))
    for when in ("before", "after"):
        assert r2[when]["eval_tokens"] == r1[when]["eval_tokens"] > 0
        assert r2[when]["perplexity"] == pytest.approx(r1[when]["perplexity"], rel=1e-6)
        assert r2[when]["exact_n"] == r1[when]["exact_n"] > 0  # main process only


def test_checkpoint_of_two_processes_resumes_in_one(lora_runs):
    run = lora_runs["root"] / "two-to-one"
    resume_copy(lora_runs["two"], run, step=2)
    train(build_config(**{**lora_runs["opts"], "output": str(run), "resume": True}))
    ref = losses(lora_runs["one"])
    got = losses(run)
    for step in (3, 4):
        assert got[step] == pytest.approx(ref[step], abs=TOL), step
    assert (
        max_diff(
            load_file(run / "adapter_model.safetensors"),
            load_file(lora_runs["one"] / "adapter_model.safetensors"),
        )
        <= TOL
    )


def test_checkpoint_of_one_process_resumes_in_two(lora_runs):
    run = lora_runs["root"] / "one-to-two"
    resume_copy(lora_runs["one"], run, step=2)
    accelerate_launch_two(
        {**lora_runs["opts"], "output": str(run), "batch_size": 2, "resume": True}
    )
    ref, got = losses(lora_runs["one"]), losses(run)
    for step in (3, 4):
        assert got[step] == pytest.approx(ref[step], abs=TOL), step
    assert (
        max_diff(
            load_file(run / "adapter_model.safetensors"),
            load_file(lora_runs["one"] / "adapter_model.safetensors"),
        )
        <= TOL
    )
    assert max_diff(*(ckpt(r, 4, "optimizer") for r in (run, lora_runs["one"]))) <= TOL


def test_adalora_allocates_the_same_ranks_in_two_processes(tmp_path, tiny_model_dir):
    """Allocation at steps 1-3 (tfinal 1 of 4 steps): scores come from the all-reduced
    gradients, so both processes keep the same triplets (each checkpoint checks that the
    processes agree bit for bit) and those of the single process."""
    data = write_toy_dataset(tmp_path / "toy.json")
    ada = dict(
        method="adalora", init_r=4, target_r=2, tinit=0, tfinal=1, deltaT=1, exact_match_limit=0
    )
    one = {
        k: v for k, v in _options(tiny_model_dir, data, tmp_path / "one", **ada).items() if k != "r"
    }
    train(build_config(**one))
    train_two_processes({**one, "output": str(tmp_path / "two"), "batch_size": 2})
    a, b = tmp_path / "one", tmp_path / "two"
    ranks = [
        {
            s: r.get("adalora_ranks")
            for s, r in enumerate(json.loads(x) for x in open(run / "metrics.jsonl"))
        }
        for run in (a, b)
    ]
    assert ranks[0] == ranks[1] and any(ranks[0].values())
    for step in (2, 4):
        assert max_diff(*(ckpt(r, step, "adapter_params") for r in (a, b))) <= TOL
        sa, sb = ckpt(a, step, "method_state"), ckpt(b, step, "method_state")
        assert sa.keys() == sb.keys() and any(k.startswith("kept.") for k in sa)
        for k in sa:  # masks exactly; importance EMAs (step 2) to rounding
            if k.startswith("kept."):
                assert torch.equal(sa[k], sb[k]), k
            else:
                assert torch.allclose(sa[k].double(), sb[k].double(), rtol=1e-4, atol=1e-9), k
    cfg_a, cfg_b = (json.loads((r / "adapter_config.json").read_text()) for r in (a, b))
    assert cfg_a["rank_pattern"] == cfg_b["rank_pattern"] is not None
    assert (
        max_diff(
            load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
        )
        <= TOL
    )


# The methods added after the seed's: each trains in 2 processes x batch 2 as in one
# process x batch 4 (2 steps, checkpoint at step 2, where the processes must agree bit for
# bit on the adapter and the method state: VeRA's shared projections are method state,
# OFT's blocks adapter weights). One launch trains them all (helpers/ddp_many_train.py).
LORA_LIKE = dict(r=4, alpha=8, dropout=0.0)
NEW_METHODS = {
    "pissa": dict(method="pissa", **LORA_LIKE),
    "olora": dict(method="olora", **LORA_LIKE),
    "loraplus": dict(method="lora", loraplus_lr_ratio=4.0, **LORA_LIKE),
    "qlora-loftq": dict(method="qlora", loftq_iter=2, **LORA_LIKE),
    "vera": dict(method="vera", r=8, dropout=0.0),
    "oft": dict(method="oft", oft_block_size=8),
    "loha": dict(method="loha", r=2, alpha=4),
    "lokr": dict(method="lokr", r=2, alpha=4),
}


def test_new_methods_train_in_two_processes_as_in_one(tmp_path, tiny_model_dir):
    data = write_toy_dataset(tmp_path / "toy.json", n=18)  # 16 train, 2 eval records
    runs = {}
    for name, kw in NEW_METHODS.items():
        opts = _options(tiny_model_dir, data, tmp_path / "one" / name, max_steps=2)
        for k in ("r", "alpha", "dropout"):  # each method's own options only
            del opts[k]
        opts.update(exact_match_limit=0, **kw)
        train(build_config(**opts))
        runs[name] = {**opts, "output": str(tmp_path / "two" / name), "batch_size": 2}
    todo = tmp_path / "runs.json"
    todo.write_text(json.dumps([_flags(o) for o in runs.values()]))
    helper = Path(__file__).parent / "helpers" / "ddp_many_train.py"
    _run([*ACCELERATE_TWO, str(helper), str(todo)])
    for name in NEW_METHODS:
        one, two = tmp_path / "one" / name, tmp_path / "two" / name
        a, b = losses(one), losses(two)
        assert sorted(a) == sorted(b) == [1, 2], name
        for step in a:
            assert b[step] == pytest.approx(a[step], abs=TOL), (name, step)
        for part in ("adapter_params", "method_state"):  # most have no method state
            sa, sb = ckpt(one, 2, part), ckpt(two, 2, part)
            assert sa.keys() == sb.keys(), (name, part)
            assert not sa or max_diff(sa, sb) <= TOL, (name, part)
        wa, wb = (load_file(r / "adapter_model.safetensors") for r in (one, two))
        assert max_diff(wa, wb) <= TOL, name
        res = json.loads((two / "results.json").read_text())
        assert res["processes"] == 2, name
    # VeRA's projections travel as method state (and in its file): the same everywhere.
    assert {"vera_A", "vera_B"} <= set(ckpt(tmp_path / "two" / "vera", 2, "method_state"))


def test_fsdp2_on_cpu_resumes_and_trains_as_one_process(lora_runs):
    """FSDP2 (parameters sharded) through the same loop: forward through the sharded
    root, evaluation and generation on every process in step, sharded optimiser state
    saved whole and cut again on resume. accelerate runs FSDP on GPUs only, so the helper
    script applies torch's fully_shard itself (see tests/helpers/fsdp_cpu_train.py)."""
    run = lora_runs["root"] / "fsdp"
    resume_copy(lora_runs["one"], run, step=2)
    opts = {**lora_runs["opts"], "output": str(run), "batch_size": 2, "resume": True}
    proc = subprocess.run(
        [
            *ACCELERATE_TWO,
            str(Path(__file__).parent / "helpers" / "fsdp_cpu_train.py"),
            *_flags(opts),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "FSDP: parameters sharded over 2 processes" in proc.stderr
    one = lora_runs["one"]
    assert losses(run)[4] == pytest.approx(losses(one)[4], abs=TOL)
    assert (
        max_diff(
            load_file(run / "adapter_model.safetensors"),
            load_file(one / "adapter_model.safetensors"),
        )
        <= TOL
    )
    assert max_diff(ckpt(run, 4, "optimizer"), ckpt(one, 4, "optimizer")) <= TOL
    res = json.loads((run / "results.json").read_text())
    assert res["after"]["perplexity"] == pytest.approx(
        json.loads((one / "results.json").read_text())["after"]["perplexity"], rel=1e-6
    )
    assert res["after"]["exact_n"] > 0 and "FSDP" in res["merge_check"]["skipped"]


# -- units (no launch) ---------------------------------------------------------------------
def test_rows_split_contiguously_and_cover_every_row_once():
    for n in range(0, 9):
        for world in (1, 2, 3):
            parts = [list(Dist(rank=r, world=world).rows(n)) for r in range(world)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_process_without_rows_gets_a_stand_in_with_no_target():
    ex = [Example([5, 6, 7, 8], n_prompt=2), Example([5, 6, 7], n_prompt=1)]
    counts = None
    for rank in (0, 1, 2):
        mine, n_targets, real = _step_batches(Dist(rank=rank, world=3), [ex], pad_id=0)
        assert len(mine) == 1
        counts = counts or (n_targets, real)
        assert (n_targets, real) == counts == (4, 7)  # the global batch's, on every rank
    assert bool((mine[0]["labels"] == IGNORE).all())  # rank 2: the stand-in


def test_plan_counts_global_batches():
    from peftlab.config import TrainConfig

    t = TrainConfig(batch_size=2, grad_accum=1, epochs=1)
    two, one = make_plan(43, t, processes=2), make_plan(43, TrainConfig(batch_size=4))
    assert (two.global_batch, two.total_steps) == (4, one.total_steps) == (4, 11)


def test_processes_that_disagree_stop_the_run():
    class Skewed(Dist):
        def gather(self, obj):
            return [obj, [v + 1e-12 for v in obj]]

    Dist().check_same("x", [1.0])
    with pytest.raises(RuntimeError, match="disagree on the weights"):
        Skewed(world=2).check_same("the weights", [1.0])


def test_num_processes_option_is_dropped_from_the_relaunched_command():
    argv = ["train", "--num-processes", "2", "--lr", "1e-3", "--num-proc=3", "--r", "4"]
    assert _drop_option(argv, "--num-processes") == ["train", "--lr", "1e-3", "--r", "4"]


def test_fsdp1_and_unshardable_methods_are_refused_clearly():
    from types import SimpleNamespace

    from peftlab.methods import get_method
    from peftlab.training.distributed import check_sharding

    def acc(version):
        plugin = SimpleNamespace(fsdp_version=version)
        return SimpleNamespace(
            distributed_type="DistributedType.FSDP", state=SimpleNamespace(fsdp_plugin=plugin)
        )

    with pytest.raises(ValueError, match="fsdp_version: 2"):
        check_sharding(acc(1), get_method("lora"))
    with pytest.raises(ValueError, match="'adalora' cannot train with FSDP"):
        check_sharding(acc(2), get_method("adalora"))
    with pytest.raises(ValueError, match="bf16"):
        check_sharding(acc(2), get_method("lora"), "fp16")
    assert check_sharding(acc(2), get_method("dora"), "bf16") == []
