"""zh_retrieval.verify on a small DVC repository with a local remote: what a killed transfer leaves, and corruption.

dvc-objects moves an object into a local store by first trying a reflink: it creates the object's own
name (O_CREAT, mode 0o666 & ~umask), asks for FICLONE and unlinks the name when the filesystem refuses.
A SIGKILL in between leaves exactly what `probe_leftover` writes. The fault suite meets it by chance
(tests/faults/test_storage.py); here it is made on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def sh(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=environment, capture_output=True, text=True)
    assert result.returncode == 0 or not check, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def verify(repo: Path, *arguments: str | Path) -> subprocess.CompletedProcess:
    return sh(sys.executable, "-m", "zh_retrieval.verify", *arguments, cwd=repo, check=False)


def probe_leftover(path: Path) -> None:
    """What a transfer killed inside dvc-objects' reflink probe leaves: the object's name, empty and writable."""
    path.unlink()
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))


@pytest.fixture
def pulled(tmp_path: Path) -> dict[str, Path]:
    """A repository with one tracked directory pushed to a local remote, and a clone that pulled it."""
    repo, remote, clone = tmp_path / "repo", tmp_path / "remote", tmp_path / "clone"
    sh("git", "init", "-q", repo, cwd=tmp_path)
    sh("git", "config", "user.email", "t@localhost", cwd=repo)
    sh("git", "config", "user.name", "t", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "cache.type", "hardlink,copy", cwd=repo)  # the project's own cache type
    (repo / "data").mkdir()
    for i in range(3):
        (repo / "data" / f"part{i}.bin").write_bytes(bytes(range(256)) * (40 + i))
    sh("dvc", "add", "-q", "data", cwd=repo)
    sh("dvc", "remote", "add", "-d", "team", remote, cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "data", cwd=repo)
    sh("dvc", "push", "-q", cwd=repo)
    sh("git", "clone", "-q", repo, clone, cwd=tmp_path)
    sh("dvc", "pull", "-q", cwd=clone)
    return {"repo": repo, "remote": remote, "clone": clone}


def a_file_object(store: Path) -> Path:
    return sorted(p for p in (store / "files" / "md5").glob("*/*") if not p.name.endswith(".dir"))[0]


def test_a_probe_left_in_the_cache_is_listed_and_the_next_pull_replaces_it(pulled: dict[str, Path]) -> None:
    clone = pulled["clone"]
    sh("rm", "-rf", "data", cwd=clone)  # the kill came before checkout: nothing in the workspace yet
    leftover = a_file_object(clone / ".dvc" / "cache")
    probe_leftover(leftover)
    found = verify(clone)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "left unfinished by an interrupted transfer" in found.stdout, found.stdout
    assert f"{leftover}: 0 bytes, writable" in found.stdout, found.stdout
    sh("dvc", "pull", "-q", cwd=clone)  # DVC re-hashes the writable object, deletes it and fetches it again
    assert leftover.stat().st_size > 0
    assert "every output and cache object matches: 1 outputs" in verify(clone).stdout
    assert "up to date" in sh("dvc", "status", cwd=clone).stdout


def test_a_read_only_object_with_other_bytes_is_corruption(pulled: dict[str, Path]) -> None:
    clone = pulled["clone"]
    sh("dvc", "unprotect", "data", cwd=clone)  # the workspace keeps its own copy of the good bytes
    corrupted = a_file_object(clone / ".dvc" / "cache")
    probe_leftover(corrupted)
    os.chmod(corrupted, 0o444)  # what DVC makes every object it finished: it never re-hashes these
    found = verify(clone)
    assert found.returncode == 1, found.stdout
    assert f"{corrupted}: corrupted: its bytes hash to d41d8cd98f00b204e9800998ecf8427e" in found.stdout


def test_a_probe_left_in_a_local_remote_is_a_problem(pulled: dict[str, Path]) -> None:
    """DVC only asks a remote whether a name exists, so there the empty object would be pulled as it is."""
    repo, remote = pulled["repo"], pulled["remote"]
    leftover = a_file_object(remote)
    probe_leftover(leftover)
    assert "in sync" in sh("dvc", "status", "-c", cwd=repo).stdout  # DVC sees nothing
    by_hash = verify(repo, "--remote", remote)
    assert by_hash.returncode == 1 and f"{leftover}: corrupted" in by_hash.stdout, by_hash.stdout
    by_size = verify(repo, "--remote-name", "team")
    assert by_size.returncode == 1 and f"{leftover}: cut short: 0 bytes of" in by_size.stdout, by_size.stdout
