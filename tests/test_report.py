"""The comparison report (peftlab.compare.report) on synthetic results.jsonl files: files written,
table filled, findings from the numbers, self-contained HTML, reruns, edge cases, and the
page rendered in headless Chromium."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from peftlab.compare.report import COLUMNS, write_report

ENV = {
    "python": "3.11.2",
    "torch": "2.13.0+cpu",
    "transformers": "4.57.1",
    "accelerate": "1.10.1",
    "cpu": "x86_64",
    "threads": 2,
}


def ev(ppl: float, em: float | None = 0.25) -> dict:
    return {
        "eval_loss": math.log(ppl),
        "perplexity": ppl,
        "exact_match": em,
        "exact_n": 8 if em is not None else 0,
        "eval_tokens": 4000,
    }


def run(
    name: str,
    ppl: float,
    trainable: int,
    mem: int,
    tps: float,
    *,
    method=None,
    em: float | None = 0.25,
    ranks: dict | None = None,
    steps: int = 20,
) -> dict:
    total = 1_000_000
    loss = math.log(ppl)
    return {
        "name": name,
        "method": method or name,
        "status": "ok",
        "error": None,
        "config": {
            "method": method or name,
            "model": {"name": "tiny", "dtype": "float32"},
            "data": {"dataset": "toy.json", "max_length": 64},
            "train": {
                "max_steps": steps,
                "epochs": 1.0,
                "batch_size": 4,
                "grad_accum": 1,
                "lr": 1e-3,
                "seed": 7,
                "mixed_precision": "no",
                "eval_every": 10,
            },
            "adapter": {"r": 4},
        },
        "params": {"trainable": trainable, "total": total, "share_pct": trainable / total * 100},
        "adapter_bytes": trainable * 4 + 500,
        "peak_memory_bytes": mem,
        "memory_kind": "rss",
        "wall_seconds": 30.0,
        "train_seconds": 25.0,
        "tokens_per_s": tps,
        "train_tokens": 5000,
        "loss_curve": [[s, 3.0 - (3.0 - loss) * s / steps] for s in range(1, steps + 1)],
        "eval_curve": [[10, loss + 0.2], [20, loss]],
        "before": ev(20.0, 0.0 if em is not None else None),
        "after": ev(ppl, em),
        "merge_check": {"max_logit_diff": 2e-6, "tolerance": 1e-4},
        "layer_ranks": ranks or {},
        "env": ENV,
        "finished_at": "2025-01-01T12:00:00+00:00",
    }


def base(ppl: float = 20.0) -> dict:
    return {
        "name": "base",
        "method": "base",
        "status": "ok",
        "error": None,
        "config": {
            "method": "base",
            "model": {"name": "tiny"},
            "data": {"dataset": "toy.json"},
            "train": {"max_steps": 20, "seed": 7},
            "adapter": {},
        },
        "params": {"trainable": 0, "total": 1_000_000, "share_pct": 0.0},
        "adapter_bytes": 0,
        "peak_memory_bytes": 300 * 2**20,
        "memory_kind": "rss",
        "wall_seconds": 4.0,
        "tokens_per_s": None,
        "before": ev(ppl, 0.0),
        "after": ev(ppl, 0.0),
        "merge_check": None,
        "layer_ranks": {},
        "env": ENV,
        "finished_at": "2025-01-01T11:00:00+00:00",
    }


def failed(name: str, error: str = "torch.OutOfMemoryError: CUDA out of memory") -> dict:
    return {"name": name, "method": name, "status": "failed", "error": error}


def write(dirpath: Path, rows: list[dict], tail: str = "") -> Path:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return dirpath


RANKS = {
    f"model.layers.{i}.self_attn.{k}": 2 + (i + j) % 3
    for i in range(3)
    for j, k in enumerate(("q_proj", "v_proj"))
}
MiB = 2**20


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """lora: best perplexity; ia3: fewest parameters, lowest memory; dora: fastest but
    dominated by lora (more parameters, worse perplexity); 'novel': a method no code
    knows, with layer ranks under a key no code knows; qlora failed."""
    out = write(
        tmp_path_factory.mktemp("cmp"),
        [
            base(),
            run("lora", 5.0, 20_000, 500 * MiB, 1000.0),
            run("dora", 5.5, 21_000, 520 * MiB, 1500.0),
            run("ia3", 8.0, 1_000, 450 * MiB, 1200.0, em=0.125),
            run(
                "novel",
                6.0,
                50_000,
                600 * MiB,
                900.0,
                ranks={"budget_ranks": RANKS, "other_scores": {"x": 1, "y": 3}},
            ),
            failed("qlora", "RuntimeError: 4-bit | kernels\nmissing <b>"),
        ],
    )
    return out, write_report(out)


def finding(summary: dict, key: str) -> dict:
    return next(f for f in summary["findings"] if f["key"] == key)


def test_files_written_and_every_column_filled(report):
    out, s = report
    for name in (
        "report.md",
        "report.html",
        "report_loss.png",
        "report_pareto.png",
        "report_memory.png",
        "report_throughput.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert [r["Method"].split()[0] for r in s["rows"]] == [
        "base",
        "lora",
        "dora",
        "ia3",
        "novel",
        "qlora",
    ]
    for row in s["rows"]:
        assert list(row) == COLUMNS
        if row["Status"] != "ok":
            continue
        for col, cell in row.items():
            assert cell.strip(), (row["Method"], col)
            assert not re.search(r"\b(None|nan|inf)\b", cell, re.I), (row["Method"], col, cell)
            if not row["Method"].startswith("base"):
                assert cell != "—", (row["Method"], col)
        assert row["Method"] in md
    lora = next(r for r in s["rows"] if r["Method"] == "lora")
    assert "20.00 → 5.00" in lora["Perplexity"] and "✓" in lora["Merge check"]
    assert "20K (2.0%)" == lora["Trainable params"]
    assert not re.search(r"\b(None|nan)\b", md)
    # Failed run: listed with its error (pipe escaped in the Markdown table).
    assert s["failed"] == [
        {"name": "qlora", "method": "qlora", "error": "RuntimeError: 4-bit | kernels\nmissing <b>"}
    ]
    assert "RuntimeError: 4-bit \\| kernels missing <b>" in md
    assert "Which method when" in md and "## Shared settings" in md and "## Environment" in md
    for img in s["images"]:
        assert f"]({img['file']})" in md and (out / img["file"]).is_file()
    assert "report:" in s["text"] and "lora" in s["text"]


def test_findings_name_the_right_methods(report):
    _, s = report
    best = finding(s, "best_perplexity")
    assert best["winners"] == ["lora"] and best["runner_up"] == "dora"
    # These synthetic results carry no per-record scores: a verdict, without an interval
    # (tests/test_stats.py covers the intervals).
    assert "lora has the best perplexity (lora 5.000, dora 5.500); no per-record" in best["text"]
    assert "base model scores 20.00" in best["text"]
    few = finding(s, "fewest_params")
    assert few["winners"] == ["ia3"] and few["runner_up"] == "lora"
    assert "20.0× fewer than lora (20K)" in few["text"]
    mem = finding(s, "lowest_memory")
    assert mem["winners"] == ["ia3"] and mem["runner_up"] == "lora"
    assert "450 MiB" in mem["text"] and "10% less than lora (500 MiB)" in mem["text"]
    fast = finding(s, "fastest")
    assert fast["winners"] == ["dora"] and fast["runner_up"] == "ia3"
    assert "25% faster than ia3 (1,200 tokens/s)" in fast["text"]
    em = finding(s, "best_exact_match")
    assert em["winners"] == ["lora", "dora", "novel"] and "tie" in em["text"]
    par = finding(s, "pareto")
    assert par["winners"] == ["ia3", "lora"]  # ordered by parameters
    assert "dora is dominated by lora" in par["text"]
    assert "novel is dominated by lora" in par["text"]


def test_html_is_self_contained(report):
    out, s = report
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(srcs) >= 4 and len(srcs) == len(s["images"])
    assert all(u.startswith("data:image/png;base64,") for u in srcs)
    assert "<table" in page and "&lt;b&gt;" in page and "<b>missing" not in page
    # Every layer_ranks key of every run gets a chart, whatever the method is called.
    titles = [i["title"] for i in s["images"]]
    assert "novel: budget_ranks" in titles and "novel: other_scores" in titles


def test_rerun_line_wins_and_keeps_order(tmp_path):
    out = write(
        tmp_path,
        [
            base(),
            run("lora", 9.0, 20_000, 500 * MiB, 1000.0),
            run("ia3", 8.0, 1_000, 450 * MiB, 1200.0),
            failed("lora"),
            run("lora", 4.0, 20_000, 500 * MiB, 1000.0),
        ],
        tail='{"name": "cut sh',
    )  # an interrupted last write
    s = write_report(out)
    assert [r["Method"] for r in s["rows"]] == ["base", "lora", "ia3"]
    assert "→ 4.00" in s["rows"][1]["Perplexity"] and s["failed"] == []
    assert finding(s, "best_perplexity")["winners"] == ["lora"]
    assert s["skipped_lines"] == 1


def test_single_method_ties_and_no_exact_match(tmp_path):
    s = write_report(write(tmp_path / "one", [run("lora", 5.0, 20_000, 500 * MiB, 900.0)]))
    assert finding(s, "best_perplexity")["text"].endswith(
        "no other method has this figure to compare with."
    )
    assert "Only one method finished" in finding(s, "pareto")["text"]
    s = write_report(
        write(
            tmp_path / "tie",
            [
                base(),
                run("a", 5.0, 100, 400 * MiB, 1000.0, em=None),
                run("b", 5.0, 100, 400 * MiB, 1000.0, em=None),
            ],
        )
    )
    for key in ("best_perplexity", "fewest_params", "lowest_memory", "fastest", "pareto"):
        assert finding(s, key)["winners"] == ["a", "b"], key
    assert "a and b tie" in finding(s, "best_perplexity")["text"]
    assert "No exact-match figures" in finding(s, "best_exact_match")["text"]
    assert all("None" not in r["Exact match"] for r in s["rows"])


def test_all_failed_and_sparse_rows(tmp_path):
    s = write_report(write(tmp_path / "bad", [failed("lora"), failed("dora", "")]))
    assert s["findings"] == [] and s["images"] == [] and len(s["failed"]) == 2
    md = (tmp_path / "bad" / "report.md").read_text()
    assert "No method finished" in md and "(no error recorded)" in md
    assert "<img" not in (tmp_path / "bad" / "report.html").read_text()
    # Only a name and a status; NaN and infinite figures; no curves anywhere.
    sparse = {
        "name": "x",
        "status": "ok",
        "after": {"perplexity": float("inf")},
        "tokens_per_s": float("nan"),
        "params": {"trainable": 10},
    }
    s = write_report(write(tmp_path / "sparse", [sparse]))
    assert "nan" not in json.dumps(s["rows"]).lower() and s["rows"][0]["Tokens/s"] == "—"
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        write_report(tmp_path / "nothing")


def test_stale_charts_removed(tmp_path):
    out = write(tmp_path, [run("ada", 5.0, 100, 400 * MiB, 1000.0, ranks={"r": RANKS})])
    s = write_report(out)
    ranks = [i["file"] for i in s["images"] if i["file"].startswith("report_ranks_")]
    assert len(ranks) == 1
    write(out, [run("ada", 5.0, 100, 400 * MiB, 1000.0)])
    write_report(out)
    assert not (out / ranks[0]).exists() and (out / "report_loss.png").exists()


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def test_html_renders_in_headless_chromium(report, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    from matplotlib.image import imread

    out, _ = report
    shot = tmp_path / "shot.png"
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (out / "report.html").resolve().as_uri()
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2000", url],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000
    px = imread(str(shot))[..., :3]
    assert px.std() > 0.05  # not a blank page
    # Charts drawn: a share of clearly coloured (not grey) pixels.
    assert ((px.max(axis=2) - px.min(axis=2)) > 0.3).mean() > 0.001  # text alone: ~0.0002
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    assert "<table" in dom and dom.count("<img") >= 4 and "Which method when" in dom


def dumped_dom(page: Path, tmp_path: Path) -> str:
    """The DOM headless Chromium builds from ``page`` (the test skips without Chromium)."""
    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    return subprocess.run(
        [*flags, "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout


def _scored(r: dict, general_ppl: float, shift: float) -> dict:
    """A row with per-record scores, a general-set score and an equal-compute curve."""
    nll = [math.log(general_ppl) + shift + 0.05 * (i % 5) for i in range(40)]
    r = {
        **r,
        "general_dataset": "bundled-general",
        "general": {
            "perplexity": general_ppl,
            "exact_match": 0.5,
            "exact_n": 40,
            "record_nll": nll,
            "record_tokens": [1] * 40,
            "exact_hits": [1, 0] * 20,
        },
    }
    if r["method"] != "base":
        r["eval_curve"] = [[0, 3.0, 0.0, 0], [10, 2.0, 12.0, 2500], [20, 1.7, 25.0, 5000]]
        r["after"] = {
            **r["after"],
            "record_nll": [0.5 + 0.01 * i for i in range(40)],
            "record_tokens": [2] * 40,
        }
    return r


def test_forgetting_sweep_and_compute_sections_render_in_chromium(tmp_path):
    rows = [_scored(base(), 3.0, 0.0)]
    for i, (r, ppl) in enumerate(((2, 6.0), (8, 5.2), (32, 5.0))):
        row = run(f"lora-r{r}", ppl, 1000 * r, 500 * MiB, 1000.0, method="lora")
        rows.append(_scored({**row, "sweep": {"r": r}}, 3.3 + 0.1 * i, 0.1 + 0.03 * i))
    rows.append(_scored(run("ia3", 7.0, 500, 450 * MiB, 1200.0), 3.05, 0.02))
    out = write(tmp_path / "cmp", rows)
    s = write_report(out)
    files = {i["file"] for i in s["images"]}
    assert {"report_efficiency.png", "report_compute.png"} <= files
    assert [row[0] for row in s["forgetting"]] == ["base", "lora-r2", "lora-r8", "lora-r32", "ia3"]
    least = {f["key"]: f for f in s["findings"]}["least_forgetting"]
    assert least["winners"] == ["ia3"]
    md = (out / "report.md").read_text()
    assert "## Forgetting: the general set" in md and "reference" in md
    dom = dumped_dom(out / "report.html", tmp_path)
    assert "Forgetting: the general set" in dom and "Least forgetting" in dom
    assert 'alt="Parameter-efficiency curve"' in dom
    assert 'alt="Perplexity at equal compute"' in dom


def test_seed_rows_render_as_one_line_per_method_in_chromium(tmp_path):
    """compare --seeds: the report's "Over seeds" table has a row per method with mean ±
    spread, and the memory verdict names a method, not one of its seeds."""
    rows = [_scored(base(), 3.0, 0.0)]
    for m, ppl, mem in (("lora", 5.8, 900), ("ia3", 6.3, 700)):
        for i, seed in enumerate((42, 43)):
            row = run(f"{m}-s{seed}", ppl + 0.1 * i, 1000, (mem + 100 * i) * MiB, 1000.0, method=m)
            rows.append(_scored({**row, "seed": seed}, 3.2 + 0.1 * i, 0.05 * i))
    out = write(tmp_path / "cmp", rows)
    s = write_report(out)
    assert [row[:2] for row in s["seeds"]] == [["lora", "2"], ["ia3", "2"]]
    assert s["seeds"][0][2] == "5.850 ± 0.071"
    assert finding(s, "lowest_memory")["winners"] == ["ia3"]
    md = (out / "report.md").read_text()
    assert "## Over seeds: mean ± spread per method" in md
    dom = dumped_dom(out / "report.html", tmp_path)
    assert "Over seeds: mean ± spread per method" in dom and "5.850 ± 0.071" in dom
