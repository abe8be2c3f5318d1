"""Where instruction records come from: the bundled set, a local file, or the Hub.

Every record is checked before training starts; a malformed one stops with an error
naming the file and the record's index (or is skipped and counted with
``skip_bad_records``).
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

BUNDLED = "bundled"
BUNDLED_ALIASES = (None, "", BUNDLED, "embedded", "default")
SPLIT_SEED = 1234
"""Fixed seed of the train/eval split of a single-file dataset, independent of the
training seed so every run of a comparison evaluates on the same records."""


class BadRecordError(ValueError):
    """A dataset record is malformed; the message names the file and the index."""


@dataclass
class Splits:
    train: list[dict]
    eval: list[dict]
    source: str
    skipped: int = 0


def check_record(rec: Any, where: str, index: int) -> dict:
    """Return a clean record ``{instruction, input, output, exact}`` or raise BadRecordError.

    ``input`` may be missing (treated as empty, as many Alpaca-style sets omit it) but
    must be a string when present; ``instruction`` and ``output`` must be non-empty strings.
    """
    def bad(why: str) -> BadRecordError:
        return BadRecordError(f"{where}: record {index}: {why}")

    if not isinstance(rec, dict):
        raise bad(f"expected an object with instruction/input/output, got {type(rec).__name__}")
    for key in ("instruction", "output"):
        if key not in rec:
            raise bad(f"field {key!r} is missing")
        if not isinstance(rec[key], str):
            raise bad(f"field {key!r} must be a string, got {type(rec[key]).__name__}")
        if not rec[key].strip():
            raise bad(f"field {key!r} is empty")
    inp = rec.get("input", "")
    if inp is None:
        inp = ""
    if not isinstance(inp, str):
        raise bad(f"field 'input' must be a string, got {type(inp).__name__}")
    exact = rec.get("exact", False)
    if not isinstance(exact, bool):
        raise bad(f"field 'exact' must be true or false, got {exact!r}")
    return {"instruction": rec["instruction"], "input": inp, "output": rec["output"],
            "exact": exact}


def check_records(raw: Iterable[Any], where: str, skip_bad: bool) -> tuple[list[dict], int]:
    good, skipped = [], 0
    for i, rec in enumerate(raw):
        try:
            good.append(check_record(rec, where, i))
        except BadRecordError as e:
            if not skip_bad:
                raise BadRecordError(f"{e} (use --skip-bad-records to skip such records)") \
                    from None
            skipped += 1
            if skipped <= 3:
                print(f"skipping {e}", file=sys.stderr)
    return good, skipped


def read_json_records(path: Path) -> list[Any]:
    """A ``.json`` list of records or a ``.jsonl`` file of one record per line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BadRecordError(f"{path}: line {lineno}: not valid JSON ({e.msg})") \
                    from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRecordError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and "train" in data:
        data = data["train"]
    if not isinstance(data, list):
        raise BadRecordError(f"{path}: expected a JSON list of records")
    return data


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


def load_splits(source: str | None = None, eval_fraction: float = 0.1,
                skip_bad_records: bool = False) -> Splits:
    """Train and eval records from the bundled set, a local file, or a Hub dataset id."""
    if source in BUNDLED_ALIASES:
        d = bundled_dir()
        tr, s1 = check_records(read_json_records(d / "train.jsonl"), str(d / "train.jsonl"),
                               skip_bad_records)
        ev, s2 = check_records(read_json_records(d / "eval.jsonl"), str(d / "eval.jsonl"),
                               skip_bad_records)
        return Splits(tr, ev, BUNDLED, s1 + s2)
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix not in (".json", ".jsonl"):
            raise ValueError(f"{path}: expected a .json or .jsonl file in Alpaca format")
        recs, skipped = check_records(read_json_records(path), str(path), skip_bad_records)
        train, ev = split_fixed(recs, eval_fraction)
        return Splits(train, ev, str(path), skipped)
    if path.exists() or source.startswith((".", "/", "~")) or source.endswith((".json", ".jsonl")):
        raise FileNotFoundError(f"dataset {source!r}: no such file")
    return _load_hub(source, eval_fraction, skip_bad_records)


def _load_hub(dataset_id: str, eval_fraction: float, skip_bad: bool) -> Splits:
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
    train, skipped = check_records(ds["train"], where, skip_bad)
    for name in ("validation", "test"):
        if name in ds:
            ev, s2 = check_records(ds[name], f"{dataset_id}[{name}]", skip_bad)
            return Splits(train, ev, dataset_id, skipped + s2)
    train, ev = split_fixed(train, eval_fraction)
    return Splits(train, ev, dataset_id, skipped)
