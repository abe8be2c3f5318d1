"""The GPU benchmark's results (``results.json``) as the BENCHMARKS.md table."""

from __future__ import annotations

from gpu_cases import CASES

GiB = 2**30
PEER = "Trainer + peft"
TITLES = {
    "lora7b": "7B LoRA step",
    "qlora7b": "7B QLoRA step (peer + bitsandbytes)",
    "dora7b": "7B DoRA step",
    "epoch": "SmolLM2-135M epoch",
}


def _time(r: dict, epoch: bool) -> str:
    if epoch:
        return f"{r['loop_s']:.1f} s"
    return f"{r['step_s']:.3f} s ({r['step_s_min']:.3f}-{r['step_s_max']:.3f})"


def _ok(r: dict | None) -> bool:
    return bool(r) and "error" not in r and "skipped" not in r


def _why(r: dict | None) -> str:
    if not r:
        return "not run"
    return f"failed: {r['error']}" if "error" in r else f"skipped: {r.get('skipped')}"


def _planner(r: dict) -> str:
    pred = r.get("predicted_bytes")
    if not pred:
        return r.get("predicted_error") or "–"
    err = pred / r["peak_bytes"] - 1
    return f"{pred / GiB:.2f} GiB ({err:+.1%})"


def row(title: str, ours: dict | None, peer: dict | None, epoch: bool) -> str:
    """One table row: peftlab's figures, the peer's, and their ratios."""
    cells = [title]
    cells.append(_time(ours, epoch) if _ok(ours) else _why(ours))
    cells.append(_time(peer, epoch) if _ok(peer) else _why(peer))
    key = "loop_s" if epoch else "step_s"
    both = _ok(ours) and _ok(peer)
    cells.append(f"**{ours[key] / peer[key]:.2f}**" if both else "–")
    cells.append(" / ".join(f"{r['tokens_per_s']:,.0f}" if _ok(r) else "–" for r in (ours, peer)))
    cells.append(" / ".join(f"{r['mfu'] * 100:.2g}%" if _ok(r) else "–" for r in (ours, peer)))
    cells.append(f"{ours['peak_bytes'] / GiB:.2f} GiB" if _ok(ours) else "–")
    cells.append(_planner(ours) if _ok(ours) else "–")
    cells.append(f"{peer['peak_bytes'] / GiB:.2f} GiB" if _ok(peer) else "–")
    cells.append(f"{ours['peak_bytes'] / peer['peak_bytes']:.2f}" if both else "–")
    return "| " + " | ".join(cells) + " |"


def rows(cases: dict) -> list[str]:
    out = []
    for name in CASES:
        epoch = CASES[name].epoch
        title = TITLES[name]
        ours, peer = cases.get(f"{name}.peftlab"), cases.get(f"{name}.peer")
        if ours is None and peer is None:
            continue
        out.append(row(title, ours, peer, epoch))
        for key, r in cases.items():  # the levers: peftlab with one on, or the peer's Liger
            if key.startswith(f"{name}.peftlab+"):
                out.append(row(f"{title}, peftlab `{key.split('+')[1]}`", r, peer, epoch))
            elif key.startswith(f"{name}.peer+"):
                out.append(row(f"{title}, peer `{key.split('+')[1]}`", ours, r, epoch))
    return out


def markdown(results: dict) -> str:
    m, cases = results.get("meta", {}), results.get("cases", {})
    lib = ", ".join(
        f"{k} {m.get(k) or 'absent'}"
        for k in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "liger_kernel")
    )
    tiny = " (--tiny: the figures mean nothing)" if m.get("tiny") else ""
    peak = next((r["peak_source"] for r in cases.values() if r.get("peak_source")), "–")
    lines = [
        f"{m.get('date', '?')}, {m.get('device', '?')}{tiny}; "
        f"Python {m.get('python', '?')}, {lib}. Each side of each case in its own process; "
        f"ratios are peftlab ÷ {PEER}. MFU peak: {peak}.",
        "",
        f"| case | peftlab | {PEER} | time ratio | tokens/s (peftlab / peer) | MFU (peftlab / "
        "peer) | peftlab peak | planner (error) | peer peak | memory ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows(cases),
        "",
    ]
    if m.get("data_note"):
        lines.append(f"Data: {m['data_note']}.")
    elif m.get("data_source"):
        lines.append(f"Data: `{m['data_source']}`.")
    settings = [
        f"{k.split('.')[0]}{'+' + k.split('+')[1] if '+' in k else ''}: "
        + ", ".join(f"{s} {v}" for s, v in r["settings"].items())
        for k, r in cases.items()
        if _ok(r) and r.get("settings")
    ]
    if settings:
        lines.append("peftlab's resolved settings: " + "; ".join(settings) + ".")
    mismatch = [k for k, r in cases.items() if _ok(r) and r.get("batches_match") is False]
    if mismatch:
        lines.append(f"**Batches differ from the peer's** in: {', '.join(mismatch)}.")
    if "error" in m:
        lines.append(f"Preparation failed: {m['error']}")
    if m.get("elapsed_s") is not None:
        budget = f"budget {m['budget_s']:.0f} s" if m.get("budget_s") else "no budget"
        lines.append(f"Whole benchmark: {m['elapsed_s']:.0f} s ({budget}).")
    return "\n".join(lines) + "\n"
