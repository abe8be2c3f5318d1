"""``peftlab eval --lm-eval``: lm-evaluation-harness on a model (a tiny random Llama with
the embedded model's tokenizer: the harness's plumbing is under test, not the model's
knowledge), with and without an adapter, over small task YAML files reading a local
JSON file (offline): the scores land in ``eval.json`` beside peftlab's own, each
document's score is the log-likelihood our model gives it, and bad tasks are one-line
errors before any model loads."""

from __future__ import annotations

import json

import pytest
import torch

from peftlab.api import config_for_adapter
from peftlab.cli import main
from peftlab.training.session import open_session

from conftest import write_toy_dataset

pytest.importorskip("lm_eval")

DOCS = [
    {"q": "What is 2+2?", "choices": ["3", "4", "5"], "label": 1, "a": " 4"},
    {"q": "The capital of France is", "choices": ["Paris", "Rome"], "label": 0, "a": " Paris"},
    {"q": "The sky on a clear day is", "choices": ["green", "blue"], "label": 1, "a": " blue"},
    {"q": "Water freezes at", "choices": ["0 C", "50 C"], "label": 0, "a": " 0 degrees"},
]
TASKS = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {kind}
doc_to_text: "Question: {{{{q}}}}\\nAnswer:"
{target}
metric_list:
  - metric: {metric}
"""


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm_eval_tasks")
    data = d / "docs.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in DOCS))
    choice = "doc_to_target: label\ndoc_to_choice: choices"
    (d / "tiny_choice.yaml").write_text(
        TASKS.format(
            name="tiny_choice", data=data, kind="multiple_choice", target=choice, metric="acc"
        )
    )
    (d / "tiny_ll.yaml").write_text(
        TASKS.format(
            name="tiny_ll",
            data=data,
            kind="loglikelihood",
            target="doc_to_target: a",
            metric="perplexity",
        )
    )
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    """Two steps at a high learning rate: an adapter that moves."""
    root = tmp_path_factory.mktemp("lm_eval_run")
    data = write_toy_dataset(root / "toy.json", n=16)
    out = root / "run"
    rc = main(
        ["train", "--model", tiny_model_dir, "--dataset", data, "--output", str(out)]
        + ["--max-steps", "2"]
        + "--batch-size 2 --r 4 --lr 2e-2 --mixed-precision no --max-length 64".split()
        + "--exact-match-limit 0 --no-progress --max-eval-records 2".split()
    )
    assert rc == 0
    return out


def _loglikelihood(model, tok, context: str, answer: str) -> float:
    """log p(answer | context) as the harness asks it: the pair encoded whole, the
    answer being the tokens after the context's."""
    whole = tok(context + answer, add_special_tokens=False).input_ids
    n = len(tok(context, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].float()
    logp = torch.log_softmax(logits[n - 1 : -1], -1)
    return float(logp.gather(1, torch.tensor(whole[n:])[:, None]).sum())


def test_adapter_and_base_scores_land_in_eval_json(run_dir, tasks, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = main(
        [
            "eval",
            "--adapter",
            str(run_dir),
            "--output",
            str(out),
            "--lm-eval",
            "tiny_choice,tiny_ll",
        ]
        + ["--lm-eval-include", str(tasks), "--max-eval-records", "2", "--exact-match-limit", "0"]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "lm-eval tiny_choice acc (n=4): adapter" in err and ", base " in err
    res = json.loads(out.read_text())
    assert "perplexity" in res  # peftlab's own evaluation, beside the harness's
    lm = res["lm_eval"]
    assert set(lm) == {"adapter", "base"}
    for label in ("adapter", "base"):
        assert lm[label]["scores"]["tiny_choice"]["n"] == 4
        assert 0.0 <= lm[label]["scores"]["tiny_choice"]["acc"] <= 1.0
        assert len(lm[label]["samples"]["tiny_choice"]["acc"]) == 4
    adapter_ll = lm["adapter"]["samples"]["tiny_ll"]["perplexity"]  # per document: log p
    base_ll = lm["base"]["samples"]["tiny_ll"]["perplexity"]
    assert adapter_ll != pytest.approx(base_ll, abs=1e-3)  # the adapter was applied
    s = open_session(config_for_adapter(run_dir), adapter_dir=run_dir, with_data=False)
    want = [
        _loglikelihood(s.model, s.tokenizer, f"Question: {d['q']}\nAnswer:", d["a"]) for d in DOCS
    ]
    assert adapter_ll == pytest.approx(want, abs=1e-3)


def test_base_model_alone_and_bad_tasks(tasks, tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "base.json"
    argv = ["eval", "--model", tiny_model_dir, "--output", str(out), "--max-eval-records", "2"]
    argv += ["--exact-match-limit", "0"]
    rc = main(
        argv + ["--lm-eval", "tiny_ll", "--lm-eval-include", str(tasks), "--lm-eval-limit", "2"]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert list(res["lm_eval"]) == ["base"]
    assert len(res["lm_eval"]["base"]["samples"]["tiny_ll"]["perplexity"]) == 2
    capsys.readouterr()
    assert main(argv + ["--lm-eval", "no_such_task"]) == 2
    assert "unknown task(s) no_such_task" in capsys.readouterr().err
    # A Hub dataset, offline and not cached: a clear error naming the task.
    assert main(argv + ["--lm-eval", "arc_easy"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--lm-eval arc_easy: its data could not be loaded" in err
    assert main(argv + ["--lm-eval", "tiny_ll", "--lm-eval-include", str(tmp_path / "nope")]) == 2
    assert not (tmp_path / "base.json.tmp").exists()


def test_compare_puts_benchmarks_in_the_report(tasks, tmp_path, tiny_model_dir):
    """``compare --lm-eval``: the base and each run scored once (a rerun adds nothing),
    the report's table gives each run's change against the base with the paired
    interval where the score is a mean over documents."""
    from peftlab.compare.harness import compare, read_rows
    from peftlab.compare.report import write_report

    cfg = {
        "model": tiny_model_dir,
        "dataset": write_toy_dataset(tmp_path / "toy.json", n=16),
        "max_steps": 2,
        "batch_size": 4,
        "max_length": 48,
        "exact_match_limit": 0,
        "progress": False,
        "mixed_precision": "no",
        "lr": 5e-2,
        "lm_eval": "tiny_choice,tiny_ll",
        "lm_eval_include": str(tasks),
    }
    out = tmp_path / "out"
    rows = compare(cfg, ["lora", "ia3"], out)
    assert [r["name"] for r in rows] == ["base", "lora", "ia3"]
    for r in rows:
        assert r["lm_eval_error"] is None, r["lm_eval_error"]
        assert r["lm_eval"]["tiny_choice"]["n"] == 4
        assert len(r["lm_eval_samples"]["tiny_ll"]["perplexity"]) == 4
    assert rows[1]["lm_eval_samples"]["tiny_ll"] != rows[0]["lm_eval_samples"]["tiny_ll"]
    stamp = (out / "runs" / "lora" / "lm_eval.json").stat().st_mtime_ns
    compare(cfg, ["lora", "ia3"], out)  # finished and scored: nothing runs again
    assert (out / "runs" / "lora" / "lm_eval.json").stat().st_mtime_ns == stamp
    assert len(read_rows(out)) == 3
    write_report(out)
    md = (out / "report.md").read_text()
    assert "## Standard benchmarks (lm-evaluation-harness)" in md
    lines = [x for x in md.splitlines() if x.startswith("| lora | tiny_choice | acc |")]
    assert len(lines) == 1 and "95% CI" in lines[0]  # accuracy: a mean over documents
    ll = [x for x in md.splitlines() if x.startswith("| lora | tiny_ll | perplexity |")]
    assert len(ll) == 1 and "95% CI" not in ll[0]  # a perplexity over tokens: the change only
