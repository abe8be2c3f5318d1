"""Where records come from: the bundled sets, a local file, or the Hub.

The format (Alpaca, OpenAI ``messages``, ShareGPT) is detected from the records or
forced; every record is checked before training starts, and a malformed one stops with
an error naming the file, the record's index and the turn (or is skipped and counted
with ``skip_bad_records``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .records import BadRecordError, check_record, check_records, detect_format  # noqa: F401

BUNDLED = "bundled"
BUNDLED_ALIASES = (None, "", BUNDLED, "embedded", "default")
BUNDLED_CHAT = "bundled-chat"
"""The bundled conversations (``chat_train.jsonl`` / ``chat_eval.jsonl``)."""
BUNDLED_GENERAL = "bundled-general"
"""The bundled general set (``general.jsonl``, all of it for evaluation): tasks unlike
the bundled training data, to measure what fine-tuning cost elsewhere."""
SPLIT_SEED = 1234
"""Fixed seed of the train/eval split of a single-file dataset, independent of the
training seed so every run of a comparison evaluates on the same records."""


TOO_DEEP = "JSON nested too deeply (thousands of levels): not a dataset record"


@dataclass
class Splits:
    train: list[dict]
    eval: list[dict]
    source: str
    skipped: int = 0
    format: str = "alpaca"
    """The records' format as read: alpaca, messages or sharegpt."""


def _checked(raw: list[Any], where: str, skip_bad: bool, fmt: str) -> tuple[list[dict], int, str]:
    if not raw:
        raise ValueError(f"{where}: the dataset has no records")
    fmt = detect_format(raw, where) if fmt == "auto" else fmt
    good, skipped = check_records(raw, where, skip_bad, fmt)
    return good, skipped, fmt


def read_json_records(path: Path) -> list[Any]:
    """A ``.json`` list of records or a ``.jsonl`` file of one record per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadRecordError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the dataset as UTF-8"
        ) from None
    if path.suffix == ".jsonl":
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BadRecordError(f"{path}: line {lineno}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise BadRecordError(f"{path}: line {lineno}: {TOO_DEEP}") from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRecordError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise BadRecordError(f"{path}: {TOO_DEEP}") from None
    if isinstance(data, dict) and "train" in data:
        data = data["train"]
    if not isinstance(data, list):
        raise BadRecordError(f"{path}: expected a JSON list of records")
    return data


def check_count(records: list, where: str, skipped: int = 0) -> None:
    """A dataset to split needs a record to train on and one to evaluate."""
    bad = f" ({skipped} malformed record(s) skipped)" if skipped else ""
    if not records:
        raise ValueError(f"{where}: the dataset has no records{bad}")
    if len(records) == 1:
        raise ValueError(
            f"{where}: the dataset has one record{bad}; at least 2 are needed "
            "(one to train on, one held out for evaluation)"
        )


def split_fixed(records: list[dict], eval_fraction: float) -> tuple[list[dict], list[dict]]:
    """Hold out ``eval_fraction`` of the records with a fixed seed (same split every run)."""
    order = list(range(len(records)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_eval = max(1, round(len(records) * eval_fraction)) if len(records) > 1 else 0
    held = set(order[:n_eval])
    train = [r for i, r in enumerate(records) if i not in held]
    ev = [r for i, r in enumerate(records) if i in held]
    return train, ev


def bundled_dir() -> Path:
    return Path(str(resources.files("peftlab.data") / "bundled"))


def load_splits(
    source: str | None = None,
    eval_fraction: float = 0.1,
    skip_bad_records: bool = False,
    data_format: str = "auto",
) -> Splits:
    """Train and eval records from the bundled sets, a local file, or a Hub dataset id."""
    if source == BUNDLED_GENERAL:
        path = bundled_dir() / "general.jsonl"
        recs, skipped, fmt = _checked(
            read_json_records(path), str(path), skip_bad_records, data_format
        )
        return Splits([], recs, BUNDLED_GENERAL, skipped, fmt)
    if source in BUNDLED_ALIASES or source == BUNDLED_CHAT:
        d = bundled_dir()
        stem = "chat_" if source == BUNDLED_CHAT else ""
        tr_path, ev_path = d / f"{stem}train.jsonl", d / f"{stem}eval.jsonl"
        tr, s1, fmt = _checked(
            read_json_records(tr_path), str(tr_path), skip_bad_records, data_format
        )
        ev, s2, _ = _checked(read_json_records(ev_path), str(ev_path), skip_bad_records, fmt)
        return Splits(tr, ev, source if source == BUNDLED_CHAT else BUNDLED, s1 + s2, fmt)
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix not in (".json", ".jsonl"):
            raise ValueError(f"{path}: expected a .json or .jsonl file of records")
        recs, skipped, fmt = _checked(
            read_json_records(path), str(path), skip_bad_records, data_format
        )
        check_count(recs, str(path), skipped)
        train, ev = split_fixed(recs, eval_fraction)
        return Splits(train, ev, str(path), skipped, fmt)
    if path.is_dir():
        raise IsADirectoryError(f"dataset {path} is a directory; give a .json or .jsonl file")
    if path.exists() or source.startswith((".", "/", "~")) or source.endswith((".json", ".jsonl")):
        raise FileNotFoundError(f"dataset {source!r}: no such file")
    return _load_hub(source, eval_fraction, skip_bad_records, data_format)


def _load_hub(dataset_id: str, eval_fraction: float, skip_bad: bool, fmt: str) -> Splits:
    try:
        import datasets

        ds = datasets.load_dataset(dataset_id)
    except Exception as e:  # datasets raises many types when offline or not found
        raise FileNotFoundError(
            f"dataset {dataset_id!r} is not a local file and could not be loaded from the "
            f"Hugging Face Hub ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})"
        ) from None
    if "train" not in ds:
        raise ValueError(f"dataset {dataset_id!r} has no 'train' split (has {list(ds)})")
    where = f"{dataset_id}[train]"
    rows = ds["train"]
    fmt = detect_format([rows[0]] if len(rows) else [], where) if fmt == "auto" else fmt
    train, skipped = check_records(rows, where, skip_bad, fmt)
    for name in ("validation", "test"):
        if name in ds:
            ev, s2 = check_records(ds[name], f"{dataset_id}[{name}]", skip_bad, fmt)
            return Splits(train, ev, dataset_id, skipped + s2, fmt)
    check_count(train, where, skipped)
    train, ev = split_fixed(train, eval_fraction)
    return Splits(train, ev, dataset_id, skipped, fmt)
