"""Run configuration: YAML (flat and nested), unknown keys, the CLI parser and the
precedence defaults < YAML < flags < --set, target-module parsing, method options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from peftlab import api, cli
from peftlab.config import RunConfig, build_config, parse_override, set_dotted
from peftlab.methods import METHODS, LoraConfig, get_method


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def captured_train(monkeypatch):
    """Run ``cli.main`` for ``train`` up to the point where it would train; return the
    RunConfig it built (cli._run builds it exactly as a real run does)."""
    seen: list[RunConfig] = []

    def fake_train(cfg, **kw):
        assert not kw
        seen.append(cfg)
        return {}

    monkeypatch.setattr(api, "train", fake_train)

    def run(argv: list[str]) -> RunConfig:
        rc = cli.main(argv)
        assert rc == 0
        assert len(seen) == 1
        return seen.pop()

    return run


# ---------------------------------------------------------------------------------- YAML


def test_yaml_flat_and_nested_give_same_config(tmp_path):
    flat = write_yaml(
        tmp_path / "flat.yaml",
        {
            "model": "org/tiny",
            "lr": 0.001,
            "r": 4,
            "max_steps": 7,
            "seed": 3,
            "dataset": "data/x.jsonl",
            "max_length": 256,
            "dtype": "bfloat16",
            "alpha": 8.0,
        },
    )
    nested = write_yaml(
        tmp_path / "nested.yaml",
        {
            "train": {"lr": 0.001, "max_steps": 7, "seed": 3},
            "adapter": {"r": 4, "alpha": 8.0},
            "data": {"dataset": "data/x.jsonl", "max_length": 256},
            "model": {"name": "org/tiny", "dtype": "bfloat16"},
        },
    )
    a, b = build_config(flat), build_config(nested)
    assert a == b
    assert a.to_dict() == b.to_dict()
    default = RunConfig()
    assert a != default
    assert a.train.lr == 0.001 and isinstance(a.train.lr, float)
    assert a.train.max_steps == 7 and a.train.seed == 3
    assert a.adapter == {"r": 4, "alpha": 8.0}
    assert a.data.dataset == "data/x.jsonl" and a.data.max_length == 256
    assert a.model.name == "org/tiny" and a.model.dtype == "bfloat16"
    # untouched options keep their defaults
    assert a.train.batch_size == default.train.batch_size
    assert a.data.eval_fraction == default.data.eval_fraction


def test_yaml_model_section_sets_model_name(tmp_path):
    cfg = build_config(write_yaml(tmp_path / "c.yaml", {"model": {"name": "org/tiny"}}))
    assert cfg.model.name == "org/tiny"


def test_flat_model_key_sets_model_name(tmp_path):
    """``model: <id>`` is the flat key for model.name, not the ``model:`` section."""
    flat = write_yaml(
        tmp_path / "flat.yaml",
        {"model": "org/tiny", "lr": 0.001, "r": 4, "max_steps": 5, "dataset": "d.jsonl"},
    )
    nested = write_yaml(
        tmp_path / "nested.yaml",
        {
            "model": {"name": "org/tiny"},
            "train": {"lr": 0.001, "max_steps": 5},
            "adapter": {"r": 4},
            "data": {"dataset": "d.jsonl"},
        },
    )
    a = build_config(flat)
    assert a.model.name == "org/tiny"
    assert a == build_config(nested)
    assert build_config(model="org/other").model.name == "org/other"


def test_yaml_exponent_notation_gives_float(tmp_path):
    """YAML 1.1 reads 2e-4 (no dot) as a string; the config must still hold a float."""
    path = tmp_path / "c.yaml"
    path.write_text("lr: 2e-4\ntrain:\n  weight_decay: 1e-2\n", encoding="utf-8")
    cfg = build_config(path)
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == pytest.approx(2e-4)
    assert isinstance(cfg.train.weight_decay, float)
    assert cfg.train.weight_decay == pytest.approx(1e-2)


def test_yaml_wrong_type_names_option(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"max_steps": "many"})
    with pytest.raises(ValueError) as ei:
        build_config(path)
    assert "max_steps" in str(ei.value) and str(path) in str(ei.value)


def test_yaml_dashes_accepted_like_underscores(tmp_path):
    cfg = build_config(
        write_yaml(tmp_path / "c.yaml", {"max-steps": 9, "train": {"batch-size": 3}})
    )
    assert cfg.train.max_steps == 9 and cfg.train.batch_size == 3


def test_yaml_unknown_flat_key_names_key_and_file(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"lr": 0.001, "learning_rate": 0.01})
    with pytest.raises(ValueError) as ei:
        build_config(path)
    msg = str(ei.value)
    assert "learning_rate" in msg and str(path) in msg


@pytest.mark.parametrize(
    "section,key", [("train", "learning_rate"), ("data", "path"), ("model", "revision")]
)
def test_yaml_unknown_nested_key_names_key_and_file(tmp_path, section, key):
    path = write_yaml(tmp_path / "bad.yaml", {section: {key: 1}})
    with pytest.raises(ValueError) as ei:
        build_config(path)
    msg = str(ei.value)
    assert key in msg and str(path) in msg


def test_yaml_unknown_section_names_it(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"trian": {"lr": 0.1}})
    with pytest.raises(ValueError) as ei:
        build_config(path)
    assert "trian" in str(ei.value) and str(path) in str(ei.value)


def test_yaml_unknown_adapter_key_names_key_and_file(tmp_path):
    """Checked when the config is built, before any model is loaded."""
    path = write_yaml(tmp_path / "bad.yaml", {"adapter": {"rank": 4}})
    with pytest.raises(ValueError) as ei:
        build_config(path)
    assert "rank" in str(ei.value) and str(path) in str(ei.value)


def test_missing_yaml_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        build_config(tmp_path / "nope.yaml")


def test_non_mapping_section_rejected(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"train": [1, 2]})
    with pytest.raises(ValueError, match="mapping"):
        build_config(path)


def test_set_dotted_and_overrides():
    cfg = RunConfig()
    set_dotted(cfg, *parse_override("train.seed=7"))
    set_dotted(cfg, *parse_override("adapter.r=2"))
    set_dotted(cfg, *parse_override("max-steps=11"))
    set_dotted(cfg, *parse_override("data.skip_bad_records=true"))
    assert cfg.train.seed == 7 and cfg.adapter["r"] == 2 and cfg.train.max_steps == 11
    assert cfg.data.skip_bad_records is True
    with pytest.raises(ValueError, match="train.bogus"):
        set_dotted(cfg, "train.bogus", 1)
    with pytest.raises(ValueError, match="nosection"):
        set_dotted(cfg, "nosection.lr", 1)
    with pytest.raises(ValueError, match="look like"):
        parse_override("train.lr")


# ----------------------------------------------------------------------------------- CLI

CLI_ARGS = [
    "train",
    "--lr",
    "1e-3",
    "--r",
    "4",
    "--target-modules",
    "q_proj,v_proj",
    "--max-steps",
    "5",
    "--set",
    "train.seed=7",
]


def test_cli_parser_train_options():
    ns = cli.build_parser().parse_args(CLI_ARGS)
    assert ns.command == "train"
    assert ns.lr == pytest.approx(1e-3) and isinstance(ns.lr, float)
    assert ns.r == 4 and isinstance(ns.r, int)
    assert ns.target_modules == ["q_proj", "v_proj"]
    assert ns.max_steps == 5 and isinstance(ns.max_steps, int)
    assert ns.set == ["train.seed=7"]
    # options not given stay absent, so they cannot override a YAML file
    assert not hasattr(ns, "batch_size") and not hasattr(ns, "alpha")


def test_cli_builds_run_config(captured_train):
    cfg = captured_train(CLI_ARGS)
    default = RunConfig()
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.adapter["r"] == 4
    assert cfg.adapter["target_modules"] == ["q_proj", "v_proj"]
    assert cfg.train.max_steps == 5
    assert cfg.train.seed == 7 != default.train.seed
    assert cfg.method == "lora"
    assert cfg.train.batch_size == default.train.batch_size
    # the options are valid for the method
    m = get_method(cfg.method, **cfg.adapter)
    assert m.config.r == 4 and m.config.target_modules == ["q_proj", "v_proj"]


def test_cli_precedence_defaults_yaml_flags_set(tmp_path, captured_train):
    default = RunConfig()
    path = write_yaml(
        tmp_path / "c.yaml", {"lr": 0.01, "r": 16, "batch_size": 3, "train": {"seed": 11}}
    )
    assert default.train.lr != 0.01 and default.train.batch_size != 3
    # YAML over defaults
    cfg = captured_train(["train", "--config", str(path)])
    assert cfg.train.lr == 0.01 and cfg.adapter["r"] == 16 and cfg.train.batch_size == 3
    assert cfg.train.seed == 11
    assert cfg.train.warmup_ratio == default.train.warmup_ratio
    # flags over YAML (only the ones given)
    cfg = captured_train(["train", "--config", str(path), "--lr", "0.001", "--r", "4"])
    assert cfg.train.lr == pytest.approx(0.001) and cfg.adapter["r"] == 4
    assert cfg.train.batch_size == 3 and cfg.train.seed == 11
    # --set over flags
    cfg = captured_train(
        [
            "train",
            "--config",
            str(path),
            "--lr",
            "0.001",
            "--r",
            "4",
            "--set",
            "train.lr=0.0005",
            "--set",
            "adapter.r=2",
            "--set",
            "seed=5",
        ]
    )
    assert cfg.train.lr == pytest.approx(0.0005) and cfg.adapter["r"] == 2
    assert cfg.train.seed == 5 and cfg.train.batch_size == 3


def test_cli_set_exponent_notation_gives_float(captured_train):
    """``--set train.lr=1e-4`` (the example in --help) must give a float."""
    cfg = captured_train(["train", "--set", "train.lr=1e-4"])
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == pytest.approx(1e-4)


def test_cli_model_flag(captured_train):
    cfg = captured_train(["train", "--model", "org/tiny", "--max-steps", "1"])
    assert cfg.model.name == "org/tiny" and cfg.train.max_steps == 1


def test_cli_unknown_set_key_is_an_error(captured_train, capsys):
    rc = cli.main(["train", "--set", "train.bogus=1"])
    assert rc == 2
    assert "train.bogus" in capsys.readouterr().err


def test_cli_unknown_adapter_set_key_is_an_error(captured_train, capsys):
    rc = cli.main(["train", "--set", "adapter.rank=4"])
    assert rc == 2
    assert "rank" in capsys.readouterr().err


def test_cli_boolean_flags(captured_train):
    cfg = captured_train(["train", "--skip-bad-records", "--no-progress"])
    assert cfg.data.skip_bad_records is True and cfg.train.progress is False


# ------------------------------------------------------------------------ parse_targets


@pytest.mark.parametrize(
    "text,expected",
    [
        ("q_proj,v_proj", ["q_proj", "v_proj"]),
        (" q_proj , v_proj ,", ["q_proj", "v_proj"]),
        ("q_proj", ["q_proj"]),
        ("model.layers.0.self_attn.q_proj", ["model.layers.0.self_attn.q_proj"]),
    ],
)
def test_parse_targets_lists(text, expected):
    assert cli.parse_targets(text) == expected


@pytest.mark.parametrize(
    "text", ["all-linear", r".*\.(q|v)_proj$", "q_proj|v_proj", r"layers\.[0-3]\..*proj"]
)
def test_parse_targets_strings(text):
    out = cli.parse_targets(text)
    assert isinstance(out, str) and out == text
    if text != "all-linear":
        re.compile(out)


# ------------------------------------------------------------------------------ methods


def test_get_method_rejects_unknown_option():
    with pytest.raises(ValueError) as ei:
        get_method("lora", r=4, bogus=1)
    assert "bogus" in str(ei.value)
    assert get_method("lora", r=4).config.r == 4


def test_get_method_unknown_name_lists_available():
    with pytest.raises(ValueError) as ei:
        get_method("nope")
    msg = str(ei.value)
    assert "nope" in msg
    assert METHODS and all(name in msg for name in METHODS)


@pytest.mark.parametrize(
    "bad", [dict(r=0), dict(r=-2), dict(r=2.5), dict(dropout=1.0), dict(dropout=-0.1)]
)
def test_lora_config_rejects_invalid(bad):
    with pytest.raises(ValueError):
        LoraConfig(**bad)


def test_lora_config_accepts_boundaries():
    assert LoraConfig(r=1).r == 1
    assert LoraConfig(dropout=0.0).dropout == 0.0
    assert LoraConfig(dropout=0.99).dropout == 0.99
    c = LoraConfig(r=4, alpha=8.0)
    assert c.scaling == pytest.approx(2.0)
    assert LoraConfig(r=4, alpha=8.0, use_rslora=True).scaling == pytest.approx(4.0)
