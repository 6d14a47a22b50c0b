"""JSONL reading that reports the file and line of bad input, outputs that appear only when complete, and what
makes a directory a model (cheap checks, without loading torch)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from zh_retrieval.core.errors import InputError

REVISION_FILE = "REVISION"  # in a fetched model or dataset directory: "<repo id>@<commit>"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a .jsonl or .jsonl.gz file."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with _open_text(path) as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InputError(path, f"not valid JSON: {error.msg} at column {error.colno}", line=line_number,
                                     fix="each line must be one JSON object") from None
                if not isinstance(row, dict):
                    raise InputError(path, f"expected a JSON object, got {type(row).__name__}", line=line_number)
                yield line_number, row
    except UnicodeDecodeError as error:
        raise InputError(path, f"not valid UTF-8 ({error.reason} at byte {error.start} of a line)",
                         fix="re-encode the file as UTF-8") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise InputError(path, f"gzip data is truncated or corrupt ({error})",
                         fix="download or copy the file again") from None


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_json(path: Path, data: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _temporary_sibling(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp-{os.getpid()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty directory that replaces `final` only if the block completes.

    A stage that fails or is killed part-way leaves no half-written output for DVC or a user
    to mistake for a result; the temporary sibling is on the same filesystem, so the final
    rename is atomic.
    """
    tmp = _temporary_sibling(final)
    _remove(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    _remove(final)
    tmp.rename(final)


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path that replaces `final` only if the block completes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(final)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, final)


def revision(path: Path) -> str:
    """What a model or dataset directory is: its recorded hub revision, else a content hash of its files."""
    if (path / REVISION_FILE).is_file():
        return (path / REVISION_FILE).read_text(encoding="utf-8").strip()
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()[:12]}"


def check_model_dir(model_dir: Path) -> None:
    """Fail early, naming the directory, if it is not a model saved with `save_pretrained` (safetensors)."""
    if not model_dir.is_dir():
        raise InputError(model_dir, "model directory not found",
                         fix="set `base_model` to a local directory saved with save_pretrained; "
                             "fetch a hub model into one first")
    if not (model_dir / "config.json").is_file():
        raise InputError(model_dir, "not a model directory: no config.json")
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise InputError(model_dir, "no safetensors weights (model.safetensors)",
                         fix="save the model with save_pretrained(safe_serialization=True); "
                             "pickled .bin weights are not loaded")
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(model_dir, "no tokenizer files (tokenizer.json or vocab.txt)")
