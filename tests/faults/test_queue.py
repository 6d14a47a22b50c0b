"""Two experiments at once: DVC's queue running two `dvc exp run -S lr=...` side by side on two cores."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from workspace import BIN, as_committed, baseline, env, sh

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict:
    repo, _ = baseline(tmp_path_factory, "queue")
    return {"repo": repo, "lock": (repo / "dvc.lock").read_bytes()}


QUEUED_LRS = ("5e-5", "2e-4")


def experiment_metrics(repo: Path) -> dict[str, dict]:
    """lr => every metrics file of the experiment that ran with it, as `dvc exp show --json` reports them."""
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo).stdout)
    found = {}
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for rev in experiment["revs"]:
                data = rev["data"]
                lr = str(data["params"]["params.yaml"]["data"]["lr"])
                found[lr] = {name: m["data"] for name, m in data["metrics"].items()}
    return found


def stop_workers(repo: Path) -> None:
    """End the queue's workers: `dvc queue stop`, then a SIGKILL for any still there after 30 s."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        sh("dvc", "queue", "stop", cwd=repo, check=False, timeout=60)
    deadline = time.monotonic() + 30
    while True:
        workers = [p for p in psutil.process_iter(["cmdline", "cwd"])
                   if "queue-worker" in " ".join(p.info["cmdline"] or []) and p.info["cwd"] == str(repo)]
        if not workers or time.monotonic() > deadline:
            break
        time.sleep(1)
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()


def test_two_queued_experiments_at_once_match_each_run_alone(workspace: dict) -> None:
    """Fault: two `dvc exp run --queue -S lr=...` and `dvc queue start -j 2`: two experiments at once
    in temporary copies of the workspace, on two cores. Checked: both succeed; each one's metrics (every
    file under metrics/) equal those of the same experiment run alone (`dvc exp run --temp`, with DVC's
    run-cache cleared between, so that the queued ones really run); the workspace is untouched."""
    repo = workspace["repo"]
    for lr in QUEUED_LRS:
        sh("dvc", "exp", "run", "--temp", "-S", f"lr={lr}", cwd=repo, timeout=900)
    alone = experiment_metrics(repo)
    sh("dvc", "exp", "remove", "--all-commits", cwd=repo)
    shutil.rmtree(repo / ".dvc" / "cache" / "runs")  # or the queued runs would be restored, not run
    for lr in QUEUED_LRS:
        sh("dvc", "exp", "run", "--queue", "-S", f"lr={lr}", cwd=repo)
    # The workers `dvc queue start` spawns inherit its output: read through a pipe, it would stay open
    # as long as a worker lives (one was seen to outlive an empty queue). A file, and the queue's status.
    with (repo.parent / "queue-start.log").open("w") as log:
        subprocess.run([str(BIN / "dvc"), "queue", "start", "-j", "2"], cwd=repo, env=env(), stdout=log,
                       stderr=subprocess.STDOUT, check=True, timeout=120)
    try:
        deadline = time.monotonic() + 900
        while True:
            status = sh("dvc", "queue", "status", cwd=repo).stdout
            if "Queued" not in status and "Running" not in status:
                break
            assert time.monotonic() < deadline, status
            time.sleep(5)
    finally:
        stop_workers(repo)
    assert status.count("Success") == 2, status
    queued = experiment_metrics(repo)
    assert len(alone) == len(queued) == len(QUEUED_LRS)
    for metrics in (*alone.values(), *queued.values()):
        assert {"metrics/dev/finetuned.json", "metrics/test/merged.json", "metrics/mine.json"} <= metrics.keys()
        assert metrics["metrics/dev/finetuned.json"]["ndcg_at_10"] > 0
    for lr in QUEUED_LRS:
        key = next(k for k in alone if float(k) == float(lr))
        assert queued[key] == alone[key], f"lr={lr}: queued and alone differ"
    assert (repo / "params.yaml").read_text() == sh("git", "show", "HEAD:params.yaml", cwd=repo).stdout
    as_committed(workspace)
    print(f"queued and alone agree for lr in {QUEUED_LRS}")
