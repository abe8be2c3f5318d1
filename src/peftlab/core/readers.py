"""Reading the files peftlab consumes, with one clear error per broken file.

A truncated or random ``.safetensors``, JSON that is not JSON or not the expected shape,
bytes that are not UTF-8, a directory where a file belongs: each becomes a
``ValueError`` (or ``FileNotFoundError``) whose message names the file and what is
wrong, instead of a library's traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def _check_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected the {what} file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({what})")


def read_json(path: str | Path, what: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object from ``path`` holding every key in ``required``."""
    path = Path(path)
    _check_file(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply ({what})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object ({what}), got {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: {what} lacks {', '.join(repr(k) for k in missing)}")
    return data


def read_safetensors(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file; a damaged file is named, with its size."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    _check_file(path, what)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        size = path.stat().st_size
        raise ValueError(
            f"{path}: not a readable safetensors file ({size} bytes; "
            f"{str(e).splitlines()[0][:160]}): truncated or damaged?"
        ) from None
