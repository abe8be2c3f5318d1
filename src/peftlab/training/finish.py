"""The end of a training run: the evaluation after training, the trained adapter (or
model) saved, the measured peak beside the planner's prediction, and the merge check
(merged against unmerged logits)."""

from __future__ import annotations

from ..core.atomic import atomic_write_json
from ..core.runtime import peak_memory_bytes
from ..formats.card import Card, write_card
from ..formats.saved import save_trained
from ..model.load import loadable_reference
from .distributed import full_params
from .evaluate import evaluate_session, merge_check, merge_within
from .metrics import scalars
from .session import Session, log
from .setup import Run, print_eval


def finish(run: Run) -> None:
    """Evaluate, then save the adapter (or whole model) and results.json (the main
    process; the others wait), with the planner's prediction (``--max-memory``'s, or
    ``plan_memory``'s, made after the measured peak is read) beside the measured peak."""
    s, dist, results = run.session, run.dist, run.results
    s.model.eval()
    results["after"] = evaluate_session(s, run.cfg, True, dist)
    run.host.end_phase("eval after")  # the merge check starts from live tensors
    results.update(run.host.summary())
    run.metrics.write(step=run.plan.total_steps, **scalars(results["after"]))
    print_eval("after", results["after"])
    with full_params(s.model):  # FSDP: every process takes part in the gathering
        if dist.is_main:
            results["adapter_bytes"] = save_trained(s.model, s.tokenizer, run.out)
    if dist.is_main:
        results["peak_memory_bytes"] = peak_memory_bytes(s.device)  # before the merge check
        planned = run.planned
        if planned is None and run.predict is not None:
            planned = run.predict()  # only now: the planner's own memory stays out of the peak
        if planned is not None:
            results["predicted_memory"] = planned
        results["merge_check"] = (
            _merge_check(s)
            if not dist.sharded
            else {
                "max_logit_diff": None,
                "skipped": "not run under FSDP (sharded weights); "
                "`peftlab merge` checks the merged model",
            }
        )
        atomic_write_json(run.out / "results.json", results)
        card = write_card(run.out, run_card(s, results))
        saved = [run.out / n for n in ("adapter_config.json", "adapter_model.safetensors")]
        run.trackers.finish(results, run.plan.total_steps, [*saved, card, run.out / "results.json"])
    dist.barrier()


def run_card(s: Session, results: dict) -> Card:
    """The run directory's model card: an adapter's, or a whole model's (full
    fine-tuning), stating the run's recorded facts."""
    kind = "model" if s.adapter.method.saves_full_model else "adapter"
    return Card(kind, s.model_id, loadable_reference(s.model_id), results)


def _merge_check(s: Session) -> dict:
    """Merged vs unmerged logits; a method that cannot merge in place reports why."""
    try:
        res = merge_check(s.model, s.eval_data.examples, s.tokenizer.pad_token_id, s.device)
    except (NotImplementedError, RuntimeError, ValueError) as e:
        return {"max_logit_diff": None, "error": f"{type(e).__name__}: {e}"}
    res["tolerance"] = s.adapter.method.merge_tolerance
    if res["max_logit_diff"] is None:
        log(f"merge check skipped: {res['skipped']}")
        return res
    res["ok"] = merge_within(res["max_logit_diff"], res["max_abs_logit"], res["tolerance"])
    if not res["ok"]:
        log(
            f"warning: merged and unmerged logits differ by {res['max_logit_diff']:.2e} "
            f"(tolerance {res['tolerance']:.0e})"
        )
    return res
