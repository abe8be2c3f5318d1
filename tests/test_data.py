"""Data pipeline: record checks, loading, the fixed split, the Alpaca prompt, the
response-only label mask, length-grouped batching. Offline and fast: the tokenizer is a
tiny word-level one trained in a fixture (pad and EOS share an id, as in the real model).
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest
import torch

from peftlab.data.alpaca import encode, format_prompt
from peftlab.data.batching import IGNORE, Example, collate, epoch_batches, target_count
from peftlab.data.sources import (
    BadRecordError,
    bundled_dir,
    check_record,
    load_splits,
    split_fixed,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DEMO = REPO.parent / "shared" / "data" / "alpaca_en_demo.json"

BOS, EOS = "<s>", "</s>"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tok():
    """A word-level tokenizer trained on the template and a few strings; BOS is added in
    front of every text encoded with special tokens; pad == eos == 2."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        format_prompt("x", "y"),
        format_prompt("x"),
        "Name three colours . red green blue",
        "Add the numbers 2 and 3 . The sum is 5",
        "Translate to French : cat dog house le chat chien maison",
        "one two three four five six seven eight nine ten",
    ]
    t = Tokenizer(models.WordLevel(unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<unk>", BOS, EOS]))
    t.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, t.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=t, unk_token="<unk>", bos_token=BOS, eos_token=EOS, pad_token=EOS
    )
    assert fast.eos_token_id == fast.pad_token_id == 2
    assert fast("red")["input_ids"][0] == fast.bos_token_id  # the post-processor is on
    return fast


def good(i: int = 0, **kw) -> dict:
    rec = {"instruction": f"Name {i} colours", "input": "", "output": f"red green {i}"}
    rec.update(kw)
    return rec


def write_json(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


BAD_RECORDS = {
    "missing_instruction": {"input": "", "output": "fine"},
    "missing_output": {"instruction": "do it", "input": ""},
    "non_string_output": {"instruction": "do it", "input": "", "output": 42},
    "empty_output": {"instruction": "do it", "input": "", "output": ""},
    "whitespace_instruction": {"instruction": " \t\n ", "input": "", "output": "fine"},
    "non_dict_record": ["do it", "", "fine"],
    "string_record": "do it",
    "non_string_input": {"instruction": "do it", "input": ["a", "b"], "output": "fine"},
}


# ------------------------------------------------------------------------ record checks


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_check_record_rejects_malformed(name):
    with pytest.raises(BadRecordError) as ei:
        check_record(BAD_RECORDS[name], "some/file.jsonl", 17)
    msg = str(ei.value)
    assert "some/file.jsonl" in msg
    assert re.search(r"\brecord 17\b", msg), msg


def test_check_record_accepts_missing_or_null_input():
    out = check_record({"instruction": "do it", "output": "fine"}, "f", 0)
    assert out["input"] == ""
    assert out["instruction"] == "do it" and out["output"] == "fine"
    assert check_record({"instruction": "a", "input": None, "output": "b"}, "f", 0)["input"] == ""
    assert check_record(good(input="ctx"), "f", 0)["input"] == "ctx"


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_load_splits_names_file_and_index(tmp_path, suffix, name):
    records = [good(0), good(1), good(2), BAD_RECORDS[name], good(4)]
    write = write_json if suffix == ".json" else write_jsonl
    path = write(tmp_path / f"data{suffix}", records)
    with pytest.raises(BadRecordError) as ei:
        load_splits(str(path))
    msg = str(ei.value)
    assert str(path) in msg
    assert re.search(r"\brecord 3\b", msg), msg


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_load_splits_skip_bad_records_counts_them(tmp_path, suffix, capsys):
    records = [good(i) for i in range(20)]
    bad_positions = [1, 5, 6, 12, 19]
    bad = list(BAD_RECORDS.values())
    for j, pos in enumerate(bad_positions):
        records[pos] = bad[j]
    write = write_json if suffix == ".json" else write_jsonl
    path = write(tmp_path / f"data{suffix}", records)
    s = load_splits(str(path), eval_fraction=0.2, skip_bad_records=True)
    assert s.skipped == len(bad_positions)
    kept = s.train + s.eval
    assert len(kept) == 20 - len(bad_positions)
    expected_outputs = {records[i]["output"] for i in range(20) if i not in bad_positions}
    assert {r["output"] for r in kept} == expected_outputs
    assert s.source == str(path)


def test_load_splits_accepts_records_without_input_key(tmp_path):
    records = [{"instruction": f"task {i}", "output": f"answer {i}"} for i in range(10)]
    s = load_splits(str(write_jsonl(tmp_path / "d.jsonl", records)))
    kept = s.train + s.eval
    assert len(kept) == 10 and s.skipped == 0
    assert all(r["input"] == "" for r in kept)


def test_jsonl_invalid_line_names_line_number(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(good(0)), json.dumps(good(1)), "", "{not json", json.dumps(good(3))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BadRecordError) as ei:
        load_splits(str(path))
    msg = str(ei.value)
    assert str(path) in msg
    assert re.search(r"\bline 4\b", msg), msg


def test_missing_json_path_raises_file_not_found(tmp_path):
    missing = tmp_path / "nowhere" / "data.json"
    with pytest.raises(FileNotFoundError) as ei:
        load_splits(str(missing))
    assert str(missing) in str(ei.value)
    with pytest.raises(FileNotFoundError) as ei:
        load_splits("no_such_file_here.jsonl")
    assert "no_such_file_here.jsonl" in str(ei.value)


def test_hub_id_offline_raises_file_not_found(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    dataset_id = "peftlab-tests/no-such-dataset-7f3a"
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as ei:
        load_splits(dataset_id)
    assert dataset_id in str(ei.value)
    assert time.perf_counter() - start < 30  # offline: must not hang on the network


# --------------------------------------------------------------------------- the split


def test_split_fixed_deterministic_disjoint_covering():
    records = [{"id": i} for i in range(237)]
    tr1, ev1 = split_fixed(records, 0.1)
    tr2, ev2 = split_fixed(list(records), 0.1)
    assert tr1 == tr2 and ev1 == ev2
    ids_tr, ids_ev = {r["id"] for r in tr1}, {r["id"] for r in ev1}
    assert not ids_tr & ids_ev
    assert ids_tr | ids_ev == set(range(237))
    assert len(tr1) + len(ev1) == 237
    assert abs(len(ev1) - 0.1 * 237) <= 1
    # the held-out part is a random sample, not the head or the tail of the list
    assert ids_ev != set(range(len(ev1))) and ids_ev != set(range(237 - len(ev1), 237))
    for frac in (0.05, 0.25, 0.5):
        _, ev = split_fixed(records, frac)
        assert abs(len(ev) - frac * 237) <= 1


def test_split_fixed_independent_of_global_rng():
    records = [{"id": i} for i in range(100)]
    random.seed(1)
    torch.manual_seed(1)
    a = split_fixed(records, 0.2)
    random.seed(999)
    torch.manual_seed(999)
    b = split_fixed(records, 0.2)
    assert a == b


def test_load_splits_same_split_every_time(tmp_path):
    path = write_json(tmp_path / "d.json", [good(i) for i in range(50)])
    a, b = load_splits(str(path), 0.2), load_splits(str(path), 0.2)
    assert a.train == b.train and a.eval == b.eval
    assert len(a.eval) == 10 and len(a.train) == 40


@pytest.mark.skipif(
    not SHARED_DEMO.is_file(), reason=f"shared demo data {SHARED_DEMO} is absent (fresh clone)"
)
def test_shared_alpaca_demo_loads():
    s = load_splits(str(SHARED_DEMO))
    total = len(s.train) + len(s.eval)
    assert total == 999 and s.skipped == 0
    assert abs(len(s.eval) / total - 0.10) < 0.005
    with_input = sum(bool(r["input"]) for r in s.train + s.eval)
    assert 0 < with_input < total


@pytest.mark.skipif(
    not (bundled_dir() / "train.jsonl").is_file(),
    reason="bundled dataset peftlab/data/bundled/train.jsonl is absent "
    "(not generated in this checkout)",
)
def test_bundled_dataset_loads():
    s = load_splits(None)
    assert s.source == "bundled" and s.train and s.eval and s.skipped == 0
    for r in s.train[:50] + s.eval[:50]:
        assert r["instruction"].strip() and r["output"].strip()
        assert isinstance(r["input"], str) and isinstance(r["exact"], bool)
    assert load_splits("bundled").train == s.train


# ------------------------------------------------------------------------------ prompts


def test_format_prompt_with_input():
    p = format_prompt("Translate the word", "cat")
    assert p.startswith("Below is an instruction")
    i_ins = p.index("### Instruction:\nTranslate the word\n\n")
    i_inp = p.index("### Input:\ncat\n\n")
    i_res = p.index("### Response:\n")
    assert i_ins < i_inp < i_res
    assert p.endswith("### Response:\n")
    assert p.count("###") == 3


@pytest.mark.parametrize("empty", ["", "   ", "\n"])
def test_format_prompt_without_input(empty):
    p = format_prompt("Name three colours", empty)
    assert p.startswith("Below is an instruction")
    assert "### Input:" not in p and "input" not in p.lower().split("###")[0]
    assert p.index("### Instruction:\nName three colours\n\n") < p.index("### Response:\n")
    assert p.endswith("### Response:\n")
    assert p.count("###") == 2
    assert p == format_prompt("Name three colours")


# ------------------------------------------------------------------ encoding and labels


def test_encode_labels_only_response_and_eos(tok):
    recs = [
        {"instruction": "Name three colours", "input": "", "output": "red green blue"},
        {
            "instruction": "Add the numbers",
            "input": "2 and 3",
            "output": "The sum is 5 one two three four five six seven eight nine ten",
        },
        {"instruction": "Translate to French", "input": "cat", "output": "le chat"},
    ]
    enc = encode(tok, recs, max_length=512)
    assert enc.truncated == 0 and enc.dropped == 0 and enc.records == recs
    batch = collate(enc.examples, tok.pad_token_id)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    width = ids.shape[1]
    for row, rec in enumerate(recs):
        prompt = tok(format_prompt(rec["instruction"], rec["input"]))["input_ids"]
        response = tok(rec["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        n = len(prompt) + len(response)
        assert ids[row, :n].tolist() == prompt + response
        assert mask[row].tolist() == [1] * n + [0] * (width - n)
        # no loss on the prompt, loss on the response and its closing EOS, none on padding
        assert (labels[row, : len(prompt)] == IGNORE).all()
        assert labels[row, len(prompt) : n].tolist() == response
        assert labels[row, n - 1].item() == tok.eos_token_id
        assert (labels[row, n:] == IGNORE).all()
        # padding uses the same id as EOS: the mask must come from positions, not ids
        assert (ids[row, n:] == tok.eos_token_id).all()
    assert (mask.sum(1) < width).any(), "the batch must contain padding for this test"
    # the response does not carry a BOS of its own
    assert not (labels == tok.bos_token_id).any()


def test_encode_truncates_from_the_end(tok):
    long_out = " ".join(["one two three four five"] * 10)
    rec = {"instruction": "Name three colours", "input": "", "output": long_out}
    short = {"instruction": "Name three colours", "input": "", "output": "red"}
    full = encode(tok, [rec], max_length=10_000).examples[0]
    max_length = full.n_prompt + 7
    assert len(full.input_ids) > max_length
    enc = encode(tok, [rec, short], max_length=max_length)
    assert enc.truncated == 1 and enc.dropped == 0 and len(enc.examples) == 2
    ex = enc.examples[0]
    assert ex.truncated and not enc.examples[1].truncated
    assert len(ex.input_ids) == max_length
    assert ex.input_ids == full.input_ids[:max_length]  # the head is kept
    assert ex.n_prompt == full.n_prompt and ex.n_targets == 7
    batch = collate([ex], tok.pad_token_id)
    assert target_count(batch) == 7


def test_encode_drops_records_whose_prompt_fills_max_length(tok):
    long_instr = " ".join(["Translate to French"] * 20)
    recs = [
        {"instruction": "Name three colours", "input": "", "output": "red"},
        {"instruction": long_instr, "input": "", "output": "le chat"},
        {"instruction": "Add the numbers", "input": "", "output": "5"},
    ]
    n_long_prompt = len(tok(format_prompt(long_instr))["input_ids"])
    n_short_prompt = len(tok(format_prompt("Name three colours"))["input_ids"])
    # a max_length that fits the short records fully but not the long prompt
    assert n_short_prompt + 5 < n_long_prompt
    enc = encode(tok, recs, max_length=n_long_prompt)  # prompt == max_length: dropped
    assert enc.dropped == 1 and len(enc.examples) == 2
    assert enc.records == [recs[0], recs[2]]
    assert all(e.n_targets >= 1 for e in enc.examples)
    enc2 = encode(tok, recs, max_length=n_long_prompt + 1)  # one response token fits
    assert enc2.dropped == 0 and enc2.truncated == 1
    assert enc2.examples[1].n_targets == 1


def test_encode_requires_eos(tok):
    no_eos = tok.__class__(tokenizer_object=tok.backend_tokenizer, unk_token="<unk>")
    assert no_eos.eos_token_id is None
    with pytest.raises(ValueError, match="EOS"):
        encode(no_eos, [good()], 64)


# ---------------------------------------------------------------------------- batching


def test_epoch_batches_cover_each_index_once():
    rng = random.Random(0)
    lengths = [rng.randint(10, 500) for _ in range(1003)]
    for epoch in range(3):
        batches = epoch_batches(lengths, 16, seed=5, epoch=epoch)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 16 for b in batches)
        assert sum(len(b) == 16 for b in batches) >= 0.9 * len(batches)  # mostly full
    ev = epoch_batches(lengths, 16, seed=5, epoch=0, shuffle=False)
    assert sorted(i for b in ev for i in b) == list(range(len(lengths)))


def test_epoch_batches_reproducible_and_epoch_dependent():
    rng = random.Random(1)
    lengths = [rng.randint(10, 500) for _ in range(600)]
    a = epoch_batches(lengths, 8, seed=3, epoch=0)
    torch.manual_seed(12345)  # the global RNG must not matter
    assert epoch_batches(lengths, 8, seed=3, epoch=0) == a
    assert epoch_batches(lengths, 8, seed=3, epoch=1) != a
    assert epoch_batches(lengths, 8, seed=4, epoch=0) != a


def _padding_waste(batches, lengths):
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return (padded - real) / real


def test_length_grouping_reduces_padding():
    rng = random.Random(2)
    lengths = [rng.randint(10, 500) for _ in range(4096)]
    bs = 8
    grouped = epoch_batches(lengths, bs, seed=0, epoch=0)
    plain = epoch_batches(lengths, bs, seed=0, epoch=0, group=False)
    assert sorted(i for b in plain for i in b) == list(range(len(lengths)))
    w_grouped, w_plain = _padding_waste(grouped, lengths), _padding_waste(plain, lengths)
    assert w_grouped < 0.25, w_grouped
    assert w_grouped < 0.5 * w_plain, (w_grouped, w_plain)


def test_target_count_counts_labelled_positions_after_the_first(tok):
    recs = [good(i, input="2 and 3" if i % 2 else "") for i in range(5)]
    enc = encode(tok, recs, 512)
    batch = collate(enc.examples, tok.pad_token_id)
    # every prompt is non-empty, so every labelled position is after the first
    assert target_count(batch) == sum(e.n_targets for e in enc.examples)
    assert target_count(batch) == int((batch["labels"] != IGNORE).sum())
    # an example with no prompt: its first label can never be predicted (nothing before it)
    b = collate([Example([5, 6, 7], 0), Example([5, 6, 7, 8, 9], 3)], pad_id=2)
    assert b["labels"][0].tolist() == [5, 6, 7, IGNORE, IGNORE]
    assert target_count(b) == 2 + 2
