"""Every list of methods comes from the registry: a method registered for one test (and
removed after it) shows in ``plan --fit``, in ``compare`` (its default list, its
validation, an opt-in ``--<name>`` flag, a one-step run) and in ``train --help``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from peftlab.cli import build_parser, main
from peftlab.core.options import option
from peftlab.methods import METHODS, AdapterLayer, Method, MethodConfig

from conftest import write_toy_dataset

NAME, OPT_IN = "nudge", "nudge_opt_in"


class NudgeLinear(AdapterLayer):
    """h = W0 x + (a·x) b: a rank-one additive update, b = 0 so it starts as the identity."""

    def __init__(self, base_layer: nn.Linear, init: float):
        super().__init__(base_layer)
        device = self.base_device()
        self.nudge_a = nn.Parameter(torch.full((1, base_layer.in_features), init, device=device))
        self.nudge_b = nn.Parameter(torch.zeros(base_layer.out_features, 1, device=device))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.nudge_a.dtype) @ self.nudge_a.T) @ self.nudge_b.T

    def delta_weight(self) -> torch.Tensor:
        return (self.nudge_b @ self.nudge_a).float()


@dataclasses.dataclass
class NudgeConfig(MethodConfig):
    nudge_init: float = option(0.01, "start value of the nudge vector a")


class Nudge(Method):
    """A throw-away method known to no list but the registry."""

    name, peft_type, config_cls = NAME, "NUDGE", NudgeConfig

    def wrap(self, module: nn.Module, name: str) -> AdapterLayer:
        return NudgeLinear(module, self.config.nudge_init)

    def to_peft_config(self, target_modules: Any, layers=None) -> dict[str, Any]:
        return {"nudge_init": self.config.nudge_init}

    @classmethod
    def from_peft_config(cls, cfg: dict[str, Any]) -> Method:
        return cls(nudge_init=cfg["nudge_init"])


class NudgeOptIn(Nudge):
    """Nudge again, compared only when asked for."""

    name, compare_by_default = OPT_IN, False


@pytest.fixture
def registered(monkeypatch):
    """The two throw-away methods in the registry for this test only."""
    monkeypatch.setitem(METHODS, NAME, Nudge)
    monkeypatch.setitem(METHODS, OPT_IN, NudgeOptIn)  # removed again after the test


def test_plan_fit_lists_a_registered_method(registered, tiny_model_dir, capsys):
    assert main(["plan", "--model", tiny_model_dir, "--no-data", "--fit", "1GiB"]) == 0
    out = capsys.readouterr().out
    for name in METHODS:
        assert f"| {name} |" in out, name


def test_train_help_offers_a_registered_method_and_its_options(registered, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"one of: {', '.join(sorted(METHODS))}" in text
    assert f"{NAME} options" in text and "--nudge-init" in text
    ns = build_parser().parse_args(["train", "--method", NAME, "--nudge-init", "0.5"])
    assert (ns.method, ns.nudge_init) == (NAME, 0.5)


def test_compare_runs_registered_methods_by_default_and_by_flag(registered, tmp_path, monkeypatch):
    from peftlab.compare import harness

    ran = []
    monkeypatch.setattr(
        harness,
        "run_method",
        lambda name, cfg, out: ran.append((name, cfg["method"])) or {"name": name, "status": "ok"},
    )
    extra = build_parser().parse_args(["compare", "--output", "x", f"--{OPT_IN}"]).extra_methods
    assert extra == [OPT_IN]
    harness.compare(
        {"max_steps": 1},
        None,
        tmp_path / "out",
        include_base=False,
        report=False,
        extra_methods=extra,
    )
    by_default = sorted(n for n, cls in METHODS.items() if cls.compare_by_default)
    assert NAME in by_default and OPT_IN not in by_default
    assert ran == [(n, n) for n in by_default + [OPT_IN]]


def test_compare_trains_a_registered_method_for_one_step(
    registered, tmp_path, tiny_model_dir, monkeypatch
):
    """The real harness and training loop, in this process (a subprocess would not see
    the method registered here)."""
    from peftlab.compare import harness

    def in_process(args, log_path):
        return main(args), "in-process run failed"

    monkeypatch.setattr(harness, "_run_subprocess", in_process)
    cfg = {
        "model": tiny_model_dir,
        "dataset": write_toy_dataset(tmp_path / "toy.json"),
        "max_steps": 1,
        "batch_size": 4,
        "max_length": 64,
        "exact_match_limit": 0,
        "progress": False,
        "mixed_precision": "no",
        NAME: {"nudge_init": 0.02},
    }
    rows = harness.compare(cfg, [NAME], tmp_path / "out", include_base=False, report=False)
    assert [(r["name"], r["status"]) for r in rows] == [(NAME, "ok")], rows[0].get("error")
    row = rows[0]
    assert row["config"]["adapter"] == {"nudge_init": 0.02}
    assert row["params"]["trainable"] > 0 and row["merge_check"]["max_logit_diff"] < 1e-4


def test_the_registry_is_as_it_was_after_those_tests():
    assert NAME not in METHODS and OPT_IN not in METHODS
