"""A full disk and a killed writer, at the level of the files every stage writes through (core/files.py).

The whole stages on a real full tmpfs, under `dvc repro`, are in tests/faults/ (`make faults`).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from zh_retrieval.core.errors import OutOfSpace, is_out_of_space
from zh_retrieval.core.files import atomic_dir, atomic_file, free_space, remove_stale_temporaries


def test_a_filesystem_too_small_stops_before_anything_is_written(tmp_path: Path) -> None:
    final = tmp_path / "embeddings"
    needed = free_space(tmp_path) + 10**9
    with pytest.raises(OutOfSpace) as raised, atomic_dir(final, needed_bytes=needed):
        raise AssertionError("the block must not run")
    assert str(raised.value).startswith(f"{final}: no space left on its filesystem: it needs about ")
    assert raised.value.needed == needed
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fills_while_writing_names_the_output_and_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(OutOfSpace) as raised, atomic_dir(final, needed_bytes=1000) as tmp:
        (tmp / "part").write_bytes(b"x" * 3000)
        raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.needed == 3000  # what it had written exceeds the estimate: the larger is reported
    assert "it needs about 3.0 KB" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_a_single_file_is_reported_too(tmp_path: Path) -> None:
    final = tmp_path / "metrics.json"
    with pytest.raises(OutOfSpace) as raised, atomic_file(final) as tmp:
        tmp.write_text("{")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert "had written 1 bytes when the disk filled" in str(raised.value)


def test_a_full_disk_in_a_file_inside_an_output_directory_names_the_directory(tmp_path: Path) -> None:
    """embed writes encoding.json with write_json inside its directory: the report names the output."""
    from zh_retrieval.core.files import write_json

    final = tmp_path / "embeddings"
    with pytest.raises(OutOfSpace) as raised, atomic_dir(final, needed_bytes=500) as tmp:
        (tmp / "corpus.npy").write_bytes(b"x" * 700)
        with atomic_file(tmp / "encoding.json") as inner:
            inner.write_text("{")
            raise OSError(errno.ENOSPC, "No space left on device")
        write_json(tmp / "never.json", {})
    assert raised.value.path == str(final) and raised.value.needed >= 700
    assert list(tmp_path.iterdir()) == []
    assert list(tmp_path.iterdir()) == []


def test_other_failures_pass_through_unchanged(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic_dir(tmp_path / "out"):
        raise ValueError("not a disk problem")
    assert list(tmp_path.iterdir()) == []


def test_libraries_full_disk_errors_are_recognised() -> None:
    """safetensors raises its own error type for a full disk; a wrapped OSError counts too."""
    from safetensors import SafetensorError

    assert is_out_of_space(SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert is_out_of_space(outer)
    assert not is_out_of_space(RuntimeError("something else"))
    assert not is_out_of_space(OSError(errno.ENOENT, "No such file"))


WRITER = """
import sys, time
from pathlib import Path
from zh_retrieval.core.files import {kind}
with {kind}(Path(sys.argv[1])) as tmp:
    (tmp / "half.npy" if tmp.is_dir() else tmp).write_bytes(b"half")
    print(tmp.name, flush=True)
    time.sleep(120)
"""


def _writer(final: Path, kind: str = "atomic_dir") -> tuple[subprocess.Popen[str], Path]:
    """A process part-way through writing `final`, and its temporary."""
    process = subprocess.Popen([sys.executable, "-c", WRITER.format(kind=kind), str(final)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, final.parent / process.stdout.readline().strip()


def _zombie(pid: int) -> bool:
    """Dead, not yet reaped (proc(5): the state follows the command's closing parenthesis)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")


def test_what_a_killed_writer_left_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """A SIGKILL runs no cleanup: its temporary sibling stays until the next write of that output.

    The killed writer is left unreaped, a zombie, as a stage is when PID 1 reaps late: its pid still
    answers kill(pid, 0), and only the dropped lock tells that nobody is writing.
    """
    final = tmp_path / "embeddings"
    killed, stale = _writer(final)
    killed_file, stale_file = _writer(tmp_path / "run.json", "atomic_file")
    for process in (killed, killed_file):
        process.kill()
        while not _zombie(process.pid):
            pass
    living, alive = _writer(final)  # a live process's write in progress
    host = socket.gethostname()
    reused = tmp_path / f".embeddings.tmp-{host}-{os.getppid()}"  # a live pid, but nobody writes it any more
    reused.mkdir()
    elsewhere = tmp_path / f".embeddings.tmp-another-host-{killed.pid}"  # another machine's: not ours to judge
    elsewhere.mkdir()
    other = tmp_path / f".other.tmp-{host}-{killed.pid}"  # another output's: left to that output's writer
    other.mkdir()
    try:
        with atomic_dir(final) as tmp:
            (tmp / "corpus.npy").write_bytes(b"done")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["embeddings", alive.name, elsewhere.name, other.name, stale_file.name])
        assert (final / "corpus.npy").read_bytes() == b"done" and (alive / "half.npy").exists()
        assert remove_stale_temporaries(tmp_path / "other") == [other]
        assert remove_stale_temporaries(tmp_path / "run.json") == [stale_file]
    finally:
        for process in (living, killed, killed_file):
            process.kill()
            process.wait()
