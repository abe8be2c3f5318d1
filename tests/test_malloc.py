"""mimalloc under the peftlab command (core/malloc.py): when it is used, that the command
re-executes onto it, and that the allocator settings act on it."""

import json
import os
import re
import subprocess
import sys

import pytest

from peftlab.host import malloc

needs_lib = pytest.mark.skipif(
    malloc.library() is None, reason="cmeel-mimalloc is not installed (Linux only)"
)


def test_wanted_unless_system_is_asked(monkeypatch):
    monkeypatch.delenv(malloc.CHOICE_ENV, raising=False)
    assert malloc.wanted()
    for value in ("system", "glibc", "0"):
        monkeypatch.setenv(malloc.CHOICE_ENV, value)
        assert not malloc.wanted()


def test_preload_env_puts_the_library_first_and_keeps_the_rest(monkeypatch, tmp_path):
    lib = tmp_path / "cmeel.prefix" / "lib" / "libmimalloc.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(sys, "platform", "linux")
    env = malloc.preload_env({"LD_PRELOAD": "/opt/other.so", "MIMALLOC_PURGE_DELAY": "5"})
    assert env["LD_PRELOAD"] == f"{lib.resolve()}:/opt/other.so"
    assert env["MIMALLOC_PURGE_DELAY"] == "5"  # a user's own setting is kept
    again = malloc.preload_env(env)
    assert again["LD_PRELOAD"] == env["LD_PRELOAD"]  # not added twice
    assert malloc.preload_env({})["MIMALLOC_PURGE_DELAY"] == str(malloc.PURGE_DELAY_MS)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "none")])
    assert malloc.preload_env({}) is None


PROBE = """
import json, torch
from peftlab.core.runtime import resident_bytes
from peftlab.host import heap, malloc
x = torch.ones(64 << 20)  # 256 MiB
held = resident_bytes()
del x
heap.trim_heap()
freed = held - resident_bytes()
print(json.dumps({"malloc": malloc.name(), "lean": heap.set_allocator("lean"),
                  "auto_memory_first": heap.resolve_allocator("auto", True),
                  "freed": freed}))
"""


@needs_lib
def test_a_preloaded_process_runs_on_mimalloc_and_its_settings_act():
    env = malloc.preload_env({**os.environ})
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["malloc"] == "mimalloc"
    # lean reads the purge delay back at mimalloc's option number before setting it
    assert got["lean"] == "lean"
    assert got["auto_memory_first"] == "default"  # QLoRA's auto on mimalloc
    assert got["freed"] > 200 << 20  # mi_collect gave the freed 256 MiB back


@needs_lib
@pytest.mark.parametrize("choice,expect", [(None, "mimalloc"), ("system", "system")])
def test_the_command_reexecutes_onto_mimalloc(tmp_path, tiny_model_dir, choice, expect):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", malloc.CHOICE_ENV, "PEFTLAB_MALLOC_TRIED")
    }
    if choice:
        env[malloc.CHOICE_ENV] = choice
    out = tmp_path / "run"
    # -X importtime: the interpreter's flags reach the re-executed process (its imports,
    # torch's among them, are timed on stderr)
    cmd = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "peftlab",
        "train",
        "--model",
        tiny_model_dir,
        "--max-steps",
        "1",
        "--max-length",
        "64",
        "--max-eval-records",
        "4",
        "--exact-match-limit",
        "0",
        "--output",
        str(out),
    ]
    p = subprocess.run(
        cmd, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert res["malloc"] == expect and res["env"]["malloc"] == expect
    assert f"({expect})" in p.stderr + p.stdout
    assert re.search(r"^import time: .*\|\s+torch$", p.stderr, re.M)


def test_without_preload_drops_mimalloc_and_keeps_other_preloads():
    env = malloc.without_preload({"LD_PRELOAD": "/x/cmeel.prefix/lib/libmimalloc.so:/opt/a.so"})
    assert env["LD_PRELOAD"] == "/opt/a.so"
    assert "LD_PRELOAD" not in malloc.without_preload({"LD_PRELOAD": "/y/libmimalloc.so.3"})


def test_distributed_ranks_are_not_moved_onto_mimalloc(monkeypatch):
    """On mimalloc a rank aborted at exit (torch's gloo threads); torch's launcher sets
    LOCAL_RANK in every rank."""
    monkeypatch.delenv(malloc.CHOICE_ENV, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not malloc.wanted()


@needs_lib
def test_a_process_on_mimalloc_starts_its_children_clean():
    """The re-executed command takes the preload out of its environment: a peftlab
    command it starts re-executes itself, a distributed rank stays on glibc."""
    env = malloc.preload_env({**os.environ})
    env["PEFTLAB_MALLOC_TRIED"] = "1"  # as the re-executed process has it
    script = (
        "import os; from peftlab.host import malloc; malloc.reexec([]); "
        "print(malloc.name(), repr(os.environ.get('LD_PRELOAD', '')), "
        "os.environ.get('PEFTLAB_MALLOC_TRIED'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    name, preload, tried = out.stdout.split()
    assert name == "mimalloc" and "libmimalloc" not in preload and tried == "None"
