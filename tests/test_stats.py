"""Uncertainty in the comparison: Wilson intervals, the paired bootstrap (identical
methods tie, a planted difference wins), verdicts that follow the data, and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from peftlab.compare.stats import paired_difference, spread, wilson
from peftlab.compare.verdicts import quality_finding


def test_wilson_matches_known_values():
    # Wilson (1927) score interval at 95%: 0/10 -> [0, 0.2775], 8/10 -> [0.4902, 0.9433]
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(1 - hi) and lo == pytest.approx(0.4038, abs=1e-4)


def records(n=80, shift=0.0, seed=0, noise=1.0):
    """Per-record NLL sums and token counts: a shared difficulty per record (so paired
    differences are far tighter than unpaired ones) plus method noise and a shift."""
    rng = np.random.default_rng(1234)
    tokens = rng.integers(5, 40, size=n)
    difficulty = rng.gamma(2.0, 1.0, size=n)
    own = np.random.default_rng(seed).normal(0, 0.05 * noise, size=n)
    nll = tokens * (difficulty * 0.4 + 1.0 + own + shift)
    return {"nll": [nll.tolist()], "tokens": [tokens.tolist()]}


def test_identical_methods_tie():
    a = records()
    iv = paired_difference(a, a, "perplexity")
    assert iv.estimate == 0 and iv.low == 0 and iv.high == 0 and not iv.excludes_zero
    iv = paired_difference(records(seed=1), records(seed=2), "perplexity")
    assert iv.low < 0 < iv.high  # same model, different noise: a tie


def test_planted_difference_wins_and_has_the_right_sign():
    iv = paired_difference(records(shift=0.0), records(shift=0.1, seed=5), "perplexity")
    assert iv.excludes_zero and iv.high < 0  # a is better (lower perplexity)
    hits_a = {"hits": [[1.0] * 70 + [0.0] * 10]}
    hits_b = {"hits": [[1.0] * 30 + [0.0] * 50]}
    iv = paired_difference(hits_a, hits_b, "exact")
    assert iv.estimate == pytest.approx(0.5) and iv.low > 0.3


def test_records_must_be_the_same_set():
    assert paired_difference(records(n=50), records(n=60), "perplexity") is None


def run(name, recs, seed=None):
    nll, tok = recs["nll"][0], recs["tokens"][0]
    ppl = float(np.exp(sum(nll) / sum(tok)))
    return {
        "name": name if seed is None else f"{name}-s{seed}",
        "method": name,
        "status": "ok",
        "after": {"perplexity": ppl, "record_nll": nll, "record_tokens": tok},
    }


@pytest.mark.parametrize("shift,verdict", [(0.0005, "tie"), (0.2, "winner")])
def test_verdict_follows_the_data(shift, verdict):
    rows = [run("lora", records(seed=1)), run("dora", records(shift=shift, seed=2))]
    f = quality_finding(rows, "perplexity")
    assert f["interval"] is not None
    if verdict == "tie":
        assert f["winners"] == ["lora", "dora"] or f["winners"] == ["dora", "lora"]
        assert "tie on perplexity" in f["text"] and "contains zero" in f["text"]
    else:
        assert f["winners"] == ["lora"] and f["runner_up"] == "dora"
        assert "lora has the best perplexity" in f["text"] and "95% interval" in f["text"]


def test_seeds_widen_the_interval_and_show_spread():
    one = [run("lora", records(seed=1)), run("dora", records(shift=0.02, seed=2))]
    many = [run("lora", records(seed=s, noise=6), seed=s) for s in (1, 2, 3)] + [
        run("dora", records(shift=0.02, seed=10 + s, noise=6), seed=s) for s in (1, 2, 3)
    ]
    f1, f3 = quality_finding(one, "perplexity"), quality_finding(many, "perplexity")
    assert "3 seeds" in f3["text"] and "±" in f3["text"]
    w1 = f1["interval"][2] - f1["interval"][1]
    w3 = f3["interval"][2] - f3["interval"][1]
    assert w3 > w1
    assert spread([1.0, 2.0, 3.0]) == (2.0, 1.0)


def test_compare_runs_each_seed_and_skips_finished_ones(tmp_path, tiny_model_dir, capsys):
    from peftlab.compare.harness import compare, read_rows

    from conftest import write_toy_dataset

    cfg = {
        "methods": ["ia3"],
        "model": tiny_model_dir,
        "max_steps": 2,
        "batch_size": 4,
        "mixed_precision": "no",
        "exact_match_limit": 2,
        "max_new_tokens": 3,
        "max_length": 64,
        "eval_every": 0,
        "save_every": 0,
        "dataset": write_toy_dataset(tmp_path / "toy.json"),
    }
    rows = compare(cfg, None, tmp_path / "cmp", include_base=False, report=False, seeds="3,5")
    assert [r["name"] for r in rows] == ["ia3-s3", "ia3-s5"]
    assert [r["seed"] for r in rows] == [3, 5] and all(r["status"] == "ok" for r in rows)
    assert rows[0]["after"]["record_nll"] != rows[1]["after"]["record_nll"]
    assert rows[0]["config"]["train"]["seed"] == 3
    capsys.readouterr()
    compare(cfg, None, tmp_path / "cmp", include_base=False, report=False, seeds="3,5")
    err = capsys.readouterr().err
    assert "ia3-s3: finished earlier, skipped" in err and "ia3-s5: finished earlier" in err
    assert set(read_rows(tmp_path / "cmp")) == {"ia3-s3", "ia3-s5"}


def test_seeds_make_one_candidate_per_method_everywhere():
    """With several seeds, every verdict compares methods (seeds averaged), never a seed of
    a method with another seed of the same method; the seed table shows mean ± sd."""
    from peftlab.compare import groups, seeds
    from peftlab.compare.verdicts import findings

    rows = []
    for m, params, mem, tps, shift in (
        ("lora", 4.9e6, 3.0, 250, 0.0),
        ("ia3", 5.8e4, 2.8, 470, 0.1),
        ("qlora", 4.9e6, 2.5, 210, 0.2),
    ):
        for i, s in enumerate((42, 43, 44)):
            r = run(m, records(shift=shift, seed=10 * len(rows) + s), seed=s)
            r.update(
                params={"trainable": params, "share_pct": params / 1.4e8 * 100},
                peak_memory_bytes=(mem + 0.1 * i) * 2**30,
                tokens_per_s=tps - i,
                wall_seconds=100.0 + i,
            )
            rows.append(r)
    found = {f["key"]: f for f in findings(rows)}
    assert found["fewest_params"]["winners"] == ["ia3"]
    assert found["lowest_memory"]["winners"] == ["qlora"]
    assert found["lowest_memory"]["runner_up"] == "ia3"
    assert "2.6 GiB (mean of 3 seeds, ± 102 MiB)" in found["lowest_memory"]["text"]
    assert found["fastest"]["winners"] == ["ia3"] and found["fastest"]["runner_up"] == "lora"
    assert set(found["pareto"]["winners"]) == {"ia3", "lora"}
    assert "qlora is dominated by lora" in found["pareto"]["text"]
    assert not any("-s4" in w for f in found.values() for w in f["winners"])
    cmap = groups.colors(rows)
    assert cmap["lora-s42"] == cmap["lora-s44"] == cmap["lora"] != cmap["ia3-s42"]
    table = {row[0]: row for row in seeds.table(rows)}
    assert list(table) == ["lora", "ia3", "qlora"] and table["ia3"][1] == "3"
    assert table["qlora"][5] == "2.6 GiB ± 102 MiB" and table["lora"][6] == "249 ± 1"
    assert seeds.table([run("lora", records(seed=1)), run("ia3", records(seed=2))]) == []
