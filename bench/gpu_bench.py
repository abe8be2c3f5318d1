"""The one prepared GPU benchmark: peftlab beside Trainer + peft (+ bitsandbytes), each
case in its own process, within a time budget; JSON and the BENCHMARKS.md table.

Cases (``gpu_cases.py``): a Mistral-7B-shaped model with random bf16 weights, LoRA
r = 16 on every linear layer, QLoRA (NF4, double quantization, bf16 compute) and DoRA,
batches of 4 Alpaca records of at most 1024 tokens, no gradient checkpointing; and one
epoch of the embedded SmolLM2-135M's shape (random weights), batch 8 x 512, 899 records.
Then, while the budget lasts, peftlab's optional levers (``--compile``,
``--padding-free``, Liger ``kernels``: only where this peftlab has the option) and the
peer with Liger (``use_liger_kernel``, where Liger is installed).

Per case and side: step time (median after warm-up, min-max; for the epoch the loop's
wall time), real tokens/s, peak memory (``torch.cuda.max_memory_allocated``; on a CPU
the process's peak resident set), MFU = model FLOPs / time / the GPU's dense bf16 peak
(``gpu_cases.model_flops``: 6·N per token plus attention, PaLM's count), and beside
peftlab's peak the planner's prediction (``plan_memory``).

    bash bench/gpu.sh                                # on the GPU machine (see its header)
    python bench/gpu_bench.py --tiny --out /tmp/gb   # every case, tiny, on a CPU (~1-2 min)
    python bench/gpu_bench.py --table out/results.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_cases import (  # noqa: E402
    CASES,
    LEVERS,
    Prepared,
    available_levers,
    case,
    prepare,
)

BUDGET_S = 450
"""The cases' share of gpu.sh's 8 minutes (the rest: start, wheels, versions)."""
MIN_LEFT_S = {"7b": 45, "small": 60}
"""A case is started only with this much of the budget left (a 7B case took ~40 s)."""


def plan_names(
    only: list[str] | None, levers: dict, liger_peer: bool, tiny: bool = False
) -> list[str]:
    """Process names in the order they run: every core case's two sides, then the levers
    (and the peer with Liger) while the budget lasts; ``tiny``: each lever once (a CPU
    compiles slowly)."""
    names = [f"{n}.{side}" for n in CASES for side in ("peftlab", "peer")]
    for lever in levers:
        names += [f"{n}.peftlab+{lever}" for n in (["lora7b"] if tiny else ["lora7b", "epoch"])]
    if liger_peer:
        names += ["lora7b.peer+liger", "epoch.peer+liger"]
    if only:
        names = [n for n in names if n.split(".")[0] in only]
    return names


def run_case(name: str, work: Path, tiny: bool) -> dict:
    """One process's case (``NAME.SIDE[+LEVER]``, or ``prepare``)."""
    import torch

    if name == "prepare":
        t0 = time.perf_counter()
        p = prepare(work, tiny)
        return {"prepare_s": time.perf_counter() - t0, **asdict(p), **environment()}
    from gpu_sides import run_peer, run_peftlab

    base, _, lever = name.partition("+")
    cname, side = base.split(".")
    c, p = case(cname, tiny), Prepared.load(work)
    peak = p.peak_flops
    sub = work / name.replace("+", "-")
    if lever and lever not in available_levers(torch.cuda.is_available()) and side == "peftlab":
        return {"skipped": f"this peftlab has no {LEVERS[lever]!r} option"}
    if side == "peer" and c.peer.get("bnb") and not _importable("bitsandbytes"):
        return {"skipped": "bitsandbytes is not installed (carry its wheel: gpu.sh --prepare)"}
    if side == "peftlab":
        value = available_levers(torch.cuda.is_available()).get(lever) if lever else None
        res = run_peftlab(c, p, sub, lever or None, value, peak)
    else:
        res = run_peer(c, p, sub, lever or None, peak)
    res.update(peak_flops=peak, peak_source=p.peak_source, device=_device_name())
    return res


def _importable(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except Exception:  # bitsandbytes raises more than ImportError without its library
        return False


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def environment() -> dict:
    import peft
    import torch
    import transformers

    env = {
        "device": _device_name(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }
    for mod in ("bitsandbytes", "liger_kernel", "accelerate"):
        try:
            env[mod] = getattr(__import__(mod), "__version__", "installed")
        except Exception:
            env[mod] = None
    return env


def spawn(name: str, work: Path, tiny: bool, timeout: float, log) -> dict:
    """Run one case in its own process; its result, or why there is none."""
    cmd = [sys.executable, __file__, "--case", name, "--work", str(work)]
    cmd += ["--tiny"] if tiny else []
    t0 = time.perf_counter()
    try:
        limit = None if math.isinf(timeout) else timeout
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else e.stderr or ""
        rc = None
    wall = time.perf_counter() - t0
    log.write(f"===== {name} (rc {rc}, {wall:.1f} s)\n{err[-6000:]}\n")
    log.flush()
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if rc is None:
        res = {"error": f"timed out after {wall:.0f} s"}
    elif not lines:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        res = {"error": f"exit {rc}: {tail[0][:300]}"}
    else:
        res = json.loads(lines[-1][len("RESULT ") :])
    res["process_s"] = wall
    return res


def orchestrate(a) -> dict:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work or tempfile.mkdtemp(prefix="gpu-bench-"))
    budget = a.budget if a.budget is not None else (math.inf if a.tiny else BUDGET_S)
    t0 = time.perf_counter()
    limit = None if math.isinf(budget) else budget  # JSON has no infinity
    results: dict = {"meta": {"tiny": a.tiny, "budget_s": limit, "date": _utc()}, "cases": {}}
    with open(out / "log.txt", "w") as log:
        prep = spawn("prepare", work, a.tiny, max(60.0, budget), log)
        results["meta"].update(prep)
        if "error" in prep:
            results["meta"]["elapsed_s"] = time.perf_counter() - t0
            return _write(out, results)
        on_cuda = prep.get("device", "cpu") != "cpu"
        levers = available_levers(on_cuda)  # asked without touching CUDA here
        liger = on_cuda and importlib.util.find_spec("liger_kernel") is not None
        only = a.only.split(",") if a.only else None
        for name in plan_names(only, levers, liger, a.tiny):
            left = budget - (time.perf_counter() - t0)
            need = 0 if a.tiny else MIN_LEFT_S[CASES[name.split(".")[0]].model]
            if left < need:
                results["cases"][name] = {"skipped": f"time budget: {left:.0f} s left"}
            else:
                results["cases"][name] = spawn(name, work, a.tiny, left, log)
            print(f"{name}: {_one_line(results['cases'][name])}", file=sys.stderr, flush=True)
            _write(out, results)
    results["meta"]["elapsed_s"] = time.perf_counter() - t0
    return _write(out, results)


def _one_line(r: dict) -> str:
    if "error" in r or "skipped" in r:
        return r.get("error") or f"skipped: {r['skipped']}"
    return (
        f"step {r['step_s']:.3f} s, loop {r['loop_s']:.1f} s, {r['tokens_per_s']:.0f} tok/s, "
        f"peak {r['peak_bytes'] / 2**30:.2f} GiB"
    )


def _utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _write(out: Path, results: dict) -> dict:
    from gpu_report import markdown

    text = markdown(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "gpu_bench.md").write_text(text)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("TINY") == "1")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-bench-out"))
    ap.add_argument("--work", help="where models and runs go (default: a new temp dir)")
    ap.add_argument("--budget", type=float, help=f"seconds for all cases (default {BUDGET_S})")
    ap.add_argument("--only", help="comma-separated case names, e.g. lora7b,epoch")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--table", help="print the table of a results.json")
    a = ap.parse_args()
    if a.table:
        from gpu_report import markdown

        return print(markdown(json.loads(Path(a.table).read_text())))
    if a.case:
        try:
            res = run_case(a.case, Path(a.work), a.tiny)
        except Exception as e:  # the orchestrator records it and goes on
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {e}"[:500]}
        print("RESULT " + json.dumps(res), flush=True)
        return
    results = orchestrate(a)
    print((Path(a.out) / "gpu_bench.md").read_text())
    if "error" in results["meta"]:
        sys.exit(f"prepare failed: {results['meta']['error']}")


if __name__ == "__main__":
    main()
