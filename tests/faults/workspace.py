"""A throwaway copy of the repository for the fault suite: the demo's pipeline, stages and model, on a slice
of its sample and general set, so that every stage can be killed, starved and re-run within minutes.

The slice keeps the sample's layout and kinds of query (the first queries of each split, their relevant
documents and the first others up to a corpus size); the stage commands, params other than the two
dataset paths, and the base model are the demo's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import write_params

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TEMPORARY_MARK = ".tmp-"  # core/files.py's temporary siblings
PARTIAL_MARK = ".partial"  # finetune's hidden training directory

# (split => queries kept, corpus size) for each dataset sliced
SAMPLE_SLICE = ({"train": 48, "dev": 12, "test": 12}, 80)
GENERAL_SLICE = ({"dev": 8, "test": 8}, 40)


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1",
                TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com", **extra)


def sh(*args: str | Path, cwd: Path, check: bool = True, timeout: float = 900,
       extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env(**(extra_env or {})), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0 or not check, \
        f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def git_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def slice_dataset(source: Path, target: Path, queries: dict[str, int], corpus_size: int) -> None:
    """The first queries of each split, every document they name, and the first other documents up to corpus_size."""
    target.mkdir(parents=True)
    kept: dict[str, list[dict]] = {}
    needed: list[str] = []
    for split, count in queries.items():
        kept[split] = _rows(source / f"{split}.jsonl")[:count]
        for row in kept[split]:
            for passage in row["positive_passages"] + row.get("negative_passages", []):
                if passage["docid"] not in needed:
                    needed.append(passage["docid"])
    documents = _rows(source / "corpus.jsonl")
    others = [d["docid"] for d in documents if d["docid"] not in set(needed)]
    chosen = set(needed) | set(others[: max(corpus_size - len(needed), 0)])
    with (target / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for document in documents:
            if document["docid"] in chosen:
                f.write(json.dumps(document, ensure_ascii=False) + "\n")
    for split, rows in kept.items():
        with (target / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                row["negative_passages"] = [p for p in row.get("negative_passages", []) if p["docid"] in chosen]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for extra in ("LICENSE",):
        if (source / extra).is_file():
            shutil.copy2(source / extra, target / extra)


def make_workspace(root: Path) -> Path:
    """A git repository holding the project as a fresh clone would, pointed at the sliced datasets."""
    repo = root / "repo"
    for name in git_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    slice_dataset(ROOT / "data/sample", repo / "data/faults-sample", *SAMPLE_SLICE)
    slice_dataset(ROOT / "data/general", repo / "data/faults-general", *GENERAL_SLICE)
    write_params(repo / "params.yaml", {"dataset": "data/faults-sample", "general.dataset": "data/faults-general"},
                 source=repo / "params.yaml")
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "workspace", cwd=repo)
    return repo


def digest(path: Path) -> str | None:
    """A content hash of a file or a directory tree (names and bytes); None if the path does not exist."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        h.update(file.relative_to(path.parent).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(file.read_bytes()).digest())
    return h.hexdigest()


def stage_outputs(repo: Path) -> dict[str, list[str]]:
    """stage name (foreach items expanded) => its output paths, from dvc.lock."""
    from ruamel.yaml import YAML

    lock = YAML(typ="safe").load((repo / "dvc.lock").read_text(encoding="utf-8"))
    return {name: [out["path"] for out in stage.get("outs", [])] for name, stage in lock["stages"].items()}


def leftovers(repo: Path) -> list[str]:
    """Temporary siblings and partial directories anywhere in the outputs' trees."""
    found = []
    for top in ("output", "data", "metrics"):
        for path in (repo / top).rglob("*"):
            if TEMPORARY_MARK in path.name or PARTIAL_MARK in path.name:
                found.append(str(path.relative_to(repo)))
    return sorted(found)


RUNNING = re.compile(r"Running stage '([^']+)'")


@dataclass
class Run:
    returncode: int
    log: str
    killed: bool = False
    started: dict[str, float] = field(default_factory=dict)  # stage => seconds after launch when DVC started it
    ended: float = 0.0

    def durations(self) -> dict[str, float]:
        """stage => seconds from its start to the next stage's (or the end), in the order DVC ran them."""
        names = list(self.started)
        ends = [self.started[n] for n in names[1:]] + [self.ended]
        return {n: end - self.started[n] for n, end in zip(names, ends)}

    def ran(self) -> set[str]:
        return set(self.started)


def dvc(repo: Path, *args: str, kill_at: tuple[str, float] | None = None, timeout: float = 900) -> Run:
    """Run a dvc command, noting when each stage starts; with kill_at=(stage, seconds), SIGKILL its whole
    process group (DVC, the stage's command and whatever that started) that long after the stage started."""
    process = subprocess.Popen([str(BIN / "dvc"), *args], cwd=repo, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run = Run(returncode=0, log="")
    lines: list[str] = []
    launched = time.monotonic()

    def read() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            match = RUNNING.search(line)
            if match:
                run.started[match.group(1)] = time.monotonic() - launched

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while process.poll() is None:
        elapsed = time.monotonic() - launched
        if kill_at and kill_at[0] in run.started and elapsed >= run.started[kill_at[0]] + kill_at[1]:
            os.killpg(process.pid, signal.SIGKILL)
            run.killed = True
            break
        if elapsed > timeout:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"dvc {' '.join(args)} ran past {timeout} s:\n" + "\n".join(lines[-50:]))
        time.sleep(0.02)
    process.wait()
    reader.join(timeout=30)
    run.ended = time.monotonic() - launched
    run.returncode = process.returncode
    run.log = "\n".join(lines)
    return run


def baseline(tmp_path_factory, name: str) -> tuple[Path, dict[str, float]]:
    """A copy of one workspace after one uninterrupted `dvc repro`, committed, and the seconds each stage took.

    Made once per `make faults` and copied for each test module (`cp -a` keeps the workspace's hardlinks
    into its cache): pytest-xdist's workers share the directory above their own temporary ones, and a
    file lock lets the first one make it while the other waits.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    made, timings = shared / "faults-baseline", shared / "faults-baseline" / "durations.json"
    with FileLock(str(shared / "faults-baseline.lock")):
        if not timings.is_file():
            shutil.rmtree(made, ignore_errors=True)
            repo = make_workspace(made)
            run = dvc(repo, "repro")
            assert run.returncode == 0, run.log[-3000:]
            sh("git", "add", "-A", cwd=repo)
            sh("git", "commit", "-q", "-m", "uninterrupted run", cwd=repo)
            timings.write_text(json.dumps(run.durations()), encoding="utf-8")
    copy = tmp_path_factory.mktemp(name) / "repo"
    subprocess.run(["cp", "-a", str(made / "repo"), str(copy)], check=True)
    return copy, json.loads(timings.read_text(encoding="utf-8"))


def as_committed(workspace: dict) -> None:
    """The workspace as its fixture left it: dvc.lock's bytes, git and DVC clean, no temporary anywhere."""
    repo = workspace["repo"]
    assert (repo / "dvc.lock").read_bytes() == workspace["lock"]
    assert sh("git", "status", "--porcelain", "--ignored=no", cwd=repo).stdout == ""
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout
    assert leftovers(repo) == []
