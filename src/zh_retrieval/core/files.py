"""JSONL reading that reports the file and line of bad input, outputs that appear only when complete (and a
full disk reported with the path and the space it needed), and what makes a directory a model (cheap checks,
without loading torch)."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from zh_retrieval.core.errors import InputError, OutOfSpace, is_out_of_space

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


TEMPORARY_MARK = ".tmp-"  # .NAME.tmp-PID: where an output is written before it is renamed into place


def _writer() -> str:
    """This process, as temporary names record it: host and pid, so that a writer on another machine
    sharing the directory (or in another pid namespace) is never taken for a dead one here."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _temporary_sibling(final: Path) -> Path:
    return final.parent / f".{final.name}{TEMPORARY_MARK}{_writer()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def _writer_lock(tmp: Path) -> Iterator[None]:
    """Hold an exclusive flock on the temporary (a directory or a file) while it is written.

    The kernel drops the lock when the writer dies, before the process even becomes a zombie. A pid
    cannot tell as much: a SIGKILLed stage stays a zombie until something reaps it (seconds, where PID 1
    reaps late), and a pid can be reused by the time the next run looks.
    """
    fd = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _being_written(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # gone already, or not ours to open: leave it
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Remove what killed runs on this machine left of `final`: temporary siblings nobody holds the lock of.

    A SIGKILL runs no cleanup, so its temporary sibling stays; the next run has another pid and
    would not see it. Left alone, they pile up, and take space, beside the output (and inside
    git-tracked directories such as metrics/). Another host's temporaries are left alone: a flock
    says nothing reliable across a network filesystem.
    """
    removed = []
    prefix = f".{final.name}{TEMPORARY_MARK}{socket.gethostname()}-"
    if not final.parent.is_dir():
        return removed
    for path in final.parent.iterdir():
        pid = path.name[len(prefix):] if path.name.startswith(prefix) else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _being_written(path):
            _remove(path)
            removed.append(path)
    return removed


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def free_space(path: Path) -> int:
    """Bytes free on the filesystem that holds (or will hold) `path`."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_free_space(final: Path, needed: int) -> None:
    """Stop before writing `final` if its filesystem cannot hold the `needed` bytes."""
    free = free_space(final.parent)
    if free < needed:
        raise OutOfSpace(final, needed, free)


def _within(path: str, directory: Path) -> bool:
    return Path(path) == directory or directory in Path(path).parents


@contextlib.contextmanager
def _space_reported(final: Path, tmp: Path, needed: int | None) -> Iterator[None]:
    """Turn a full disk while writing `tmp` into OutOfSpace for `final`, with the partial output removed."""
    try:
        yield
    except BaseException as error:
        full = (_within(error.path, tmp) if isinstance(error, OutOfSpace)  # a file written inside tmp
                else isinstance(error, Exception) and is_out_of_space(error))
        written = 0
        if full:
            with contextlib.suppress(OSError):  # a size that cannot be read must not hide the error
                written = tree_size(tmp)
        _remove(tmp)
        if not full:
            raise
        raise OutOfSpace(final, max(needed or 0, written), free_space(final.parent),
                         known=needed is not None) from error


@contextlib.contextmanager
def atomic_dir(final: Path, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield an empty directory that replaces `final` only if the block completes.

    A stage that fails or is killed part-way leaves no half-written output for DVC or a user
    to mistake for a result; the temporary sibling is on the same filesystem, so the final
    rename is atomic. With `needed_bytes`, a filesystem that cannot hold them stops the stage
    before it writes; a disk that fills anyway is reported with the output's path.
    """
    remove_stale_temporaries(final)
    if needed_bytes is not None:
        check_free_space(final, needed_bytes)
    tmp = _temporary_sibling(final)
    _remove(tmp)
    with _space_reported(final, tmp, needed_bytes):
        tmp.mkdir(parents=True)
        with _writer_lock(tmp):
            yield tmp
            _remove(final)
            tmp.rename(final)


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path that replaces `final` only if the block completes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = _temporary_sibling(final)
    with _space_reported(final, tmp, None):
        tmp.touch()  # to hold the lock on; writers open it with "w", the same inode
        with _writer_lock(tmp):
            yield tmp
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
    check_no_own_code(model_dir)


CODE_CONFIGS = ("config.json", "tokenizer_config.json", "preprocessor_config.json")


def check_no_own_code(model_dir: Path) -> None:
    """Refuse a model that carries its own modelling code (`auto_map`): no stage ever runs a model's code.

    transformers imports the Python files `auto_map` names only with trust_remote_code=True, which
    no stage sets; LM-Cocktail's loader does, so a model like this is stopped here, before any
    library sees it.
    """
    for name in CODE_CONFIGS:
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(path, f"not valid JSON ({error})") from None
        auto_map = config.get("auto_map") if isinstance(config, dict) else None
        if auto_map:
            code = sorted(p.name for p in model_dir.glob("*.py"))
            named = (", ".join(f"{k} -> {v}" for k, v in sorted(auto_map.items())) if isinstance(auto_map, dict)
                     else ", ".join(map(str, auto_map)))  # the older form: a list of class paths
            raise InputError(path, f"the model carries its own code (`auto_map`: {named}"
                             + (f"; {', '.join(code)}" if code else "") + "), which this project never runs",
                             fix="use a model whose architecture transformers has built in (e.g. BERT), "
                                 "saved without `auto_map`")


def check_cross_encoder_dir(model_dir: Path) -> None:
    """Fail early, naming the directory, unless it is a saved cross-encoder: a sequence-classification model
    with one logit (bge-reranker's layout) and its tokenizer. An embedder loads as one too, with a random head,
    and would rerank at random without a word; this says so instead."""
    check_model_dir(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    if not any(str(name).endswith("ForSequenceClassification") for name in architectures):
        shown = ", ".join(map(str, architectures)) or "none recorded"
        raise InputError(model_dir, f"not a cross-encoder: its architecture is {shown}, not a "
                         "...ForSequenceClassification with a scoring head (an embedder, by the look of it)",
                         fix="point reranker.base_model at a reranker such as BAAI/bge-reranker-base, or build one "
                             "(scripts/build_reranker.py)")
    labels = config.get("num_labels", len(config.get("id2label") or {0: None}))
    if labels != 1:
        raise InputError(model_dir / "config.json", f"the head has {labels} outputs; a reranker scores a pair "
                         "with one logit", fix="use a cross-encoder saved with num_labels=1")
