"""Faults of storage and sharing: a full disk, two runs in one workspace, an interrupted push or pull, a
corrupted cache or remote (two experiments at once: test_queue.py). Each test states the fault, how it is
injected, what the user sees and what is checked.

The tests share one workspace (the module's fixture: a copy of the uninterrupted run, with a local remote
as the team's) and leave it as they found it; they run in the order written.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from test_ssh_remote import ssh_server  # noqa: F401  (a fixture: Debian's sshd on 127.0.0.1)
from workspace import BIN, as_committed, baseline, env, sh

pytestmark = pytest.mark.faults

REMOTE_OBJECTS_BEFORE_KILL = 8


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict:
    repo, _ = baseline(tmp_path_factory, "storage")
    root = repo.parent
    remote = root / "remote"
    sh("dvc", "remote", "add", "-d", "team", str(remote), cwd=repo)
    sh("git", "commit", "-q", "-am", "the team's remote", cwd=repo)
    return {"repo": repo, "root": root, "remote": remote, "lock": (repo / "dvc.lock").read_bytes()}


def cache_objects(store: Path) -> list[Path]:
    root = store / "files" / "md5"
    return [p for p in root.glob("*/*") if not p.name.startswith(".")] if root.is_dir() else []


def namespace_prefix() -> list[str] | None:
    """A private mount namespace for a tmpfs: as root directly, else as a mapped root in a user namespace."""
    if not shutil.which("unshare"):
        return None
    for prefix in (["unshare", "--mount", "--propagation", "private"],
                   ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


FULL_DISK = """
set -u
cd {repo}
mount -t tmpfs -o size={size} tmpfs output
dvc checkout -q
free() {{ df --output=avail -B1 output | tail -1; }}
head -c $(( $(free) - {leave} )) /dev/zero > output/filler 2>/dev/null
echo "FREE $(free)"
{before_stage}
FILLER=$!
dvc repro -f -s {stage} > stage.log 2>&1
echo "EXIT $?"
temporaries() {{ find output -name '.*.tmp-*' -o -name '.*.partial*' | tr '\\n' ' '; }}
echo "AFTER $(temporaries)"
echo "OUTPUT $(test -e {output} && echo present || echo absent)"
kill $FILLER 2>/dev/null; wait $FILLER 2>/dev/null
rm -f output/filler output/filler2
dvc repro -f -s {stage} > repro.log 2>&1
echo "REPRO $?"
echo "LEFT $(temporaries)"
"""


@pytest.mark.parametrize(("stage", "output", "leave", "fill_later"), [
    ("embed@base", "output/embeddings/base", 200_000, False),  # less than embed needs, before it starts
    ("finetune", "output/finetuned", 12_000_000, True),  # enough to start; filled while it trains
], ids=["embed-starved", "finetune-filled-while-training"])
def test_a_full_disk_stops_the_stage_clearly_and_a_rerun_gives_the_same_outputs(
        workspace: dict, stage: str, output: str, leave: int, fill_later: bool) -> None:
    """Fault: output/ on a 64 MB tmpfs (the outputs as DVC's symlinks into the cache), filled by a file
    that leaves too little: before embed starts, or while finetune trains (a second file, 8 s in).
    Seen: one line naming the output and the space it needed, exit 2. Checked: nothing half-written
    (no output, no temporary sibling); with the space freed, `dvc repro -f -s STAGE` runs the stage again
    (without -f, DVC would check the outputs its dvc.lock entry names out of the cache instead) and
    dvc.lock is byte-identical to the uninterrupted run's."""
    prefix = namespace_prefix()
    if prefix is None:
        pytest.skip("no mount namespace for a tmpfs here (unshare --mount, as root or in a user namespace)")
    repo = workspace["repo"]
    # Filled once training has begun (finetune logs "fine-tuning ..." first): its model is saved at the end.
    before = ("(until grep -q 'fine-tuning' stage.log 2>/dev/null; do sleep 0.2; done; sleep 2; "
              "head -c 100000000 /dev/zero > output/filler2 2>/dev/null) &" if fill_later else "true &")
    script = FULL_DISK.format(repo=repo, size="64m", leave=leave, stage=stage, output=output, before_stage=before)
    result = subprocess.run([*prefix, "bash", "-c", script], env=env(), capture_output=True, text=True, timeout=900)
    report = {key: value.strip() for key, _, value in (line.partition(" ") for line in result.stdout.splitlines())}
    try:
        stage_log = (repo / "stage.log").read_text()
        assert report["EXIT"] != "0", stage_log[-3000:]
        message = next((line for line in stage_log.splitlines() if "no space left" in line), stage_log[-3000:])
        assert f"ERROR zh_retrieval.core.errors: {output}: no space left on its filesystem: it needs about" in message
        print(message)
        assert "Traceback" not in stage_log
        assert report["OUTPUT"] == "absent"
        assert report["AFTER"] == "", report["AFTER"]  # no temporary, no partial model, at any depth
        assert report["REPRO"] == "0", (repo / "repro.log").read_text()[-3000:]
        assert f"Running stage '{stage}'" in (repo / "repro.log").read_text()
        assert report["LEFT"] == "", report["LEFT"]
    finally:
        for log in ("stage.log", "repro.log"):
            (repo / log).unlink(missing_ok=True)
    as_committed(workspace)  # the tmpfs is gone with its namespace: output/ is the one underneath


def running(pid: int, command: str) -> bool:
    """Whether a process below `pid` runs `command` (children that end while being read are skipped)."""
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if command in " ".join(child.cmdline()):
                return True
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return False


def test_a_second_repro_in_the_same_workspace_is_refused(workspace: dict) -> None:
    """Fault: `dvc repro` started while another runs in the workspace. Seen: DVC refuses the second
    ("... is busy, it is being blocked by: (PID n): dvc repro"), exit non-zero, and the first finishes.
    Checked: the first's result is the uninterrupted run's; nothing interleaved."""
    repo = workspace["repo"]
    log = repo.parent / "first-repro.log"
    with log.open("w") as out:
        first = subprocess.Popen([str(BIN / "dvc"), "repro", "-f", "-s", "finetune"], cwd=repo, env=env(),
                                 stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not running(first.pid, "zh_retrieval.stages.finetune"):
        assert first.poll() is None and time.monotonic() < deadline, "finetune did not start"
        time.sleep(0.1)
    second = sh("dvc", "repro", cwd=repo, check=False)
    output = second.stdout + second.stderr
    assert second.returncode != 0, output
    assert "is busy, it is being blocked by" in output and "dvc repro" in output, output
    assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    as_committed(workspace)


def kill_when(command: list[str], cwd: Path, store: Path, objects: int, extra_env: dict | None = None) -> int:
    """Start a transfer and SIGKILL it once `store` holds `objects` more objects than before; the objects seen."""
    start = len(cache_objects(store))
    process = subprocess.Popen(command, cwd=cwd, env=env(**(extra_env or {})), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    while process.poll() is None and len(cache_objects(store)) - start < objects:
        time.sleep(0.002)
    finished = process.poll() is not None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not finished, f"{' '.join(command)} finished before it could be interrupted"
    return len(cache_objects(store))


def verify(repo: Path, *arguments: str | Path, check: bool = True, extra_env: dict | None = None
           ) -> subprocess.CompletedProcess:
    """`python -m zh_retrieval.verify`; a bare path is a local remote's directory (--remote)."""
    args = [a for arg in arguments for a in (("--remote", arg) if isinstance(arg, Path) else (arg,))]
    return sh("python", "-m", "zh_retrieval.verify", *args, cwd=repo, check=check, extra_env=extra_env)


def interrupted_push_and_pull(repo: Path, clone: Path, remote_store: Path, remote: str,
                              extra_env: dict | None = None) -> list[tuple[str, str]]:
    """The fault on one remote; returns the objects a killed push left cut short there (SSH only)."""
    def run(*args: str | Path, cwd: Path) -> str:
        return sh(*args, cwd=cwd, extra_env=extra_env).stdout

    total = len(cache_objects(repo / ".dvc" / "cache"))
    seen = kill_when([str(BIN / "dvc"), "push", "-j", "1"], repo, remote_store, REMOTE_OBJECTS_BEFORE_KILL,
                     extra_env)
    assert seen < total
    assert "new:" in run("dvc", "status", "-c", cwd=repo)  # DVC sees what is missing
    # A local remote gets each object through a temporary and a rename, after a reflink probe that
    # creates the object's own name empty and unlinks it when the filesystem refuses; dvc-ssh's put
    # writes the object's own name, so a kill mid-file leaves it short. DVC, which only asks a remote
    # whether a name exists, keeps either. verify compares every object's size with the cache's by the
    # remote's name, over its own connection.
    checked = verify(repo, "--remote-name", remote, check=False, extra_env=extra_env)
    cut_short = re.findall(r"^(\S+): cut short: (\S+) bytes", checked.stdout, flags=re.MULTILINE)
    assert checked.returncode == (1 if cut_short else 0), checked.stdout
    for path, _ in cut_short:  # the repair docs/sharing.md gives: delete it there, push again
        Path(path).unlink()
    run("dvc", "push", "-j", "1", cwd=repo)
    assert "every output and cache object matches" in verify(repo, remote_store, extra_env=extra_env).stdout
    assert "in sync" in run("dvc", "status", "-c", cwd=repo)

    run("git", "clone", "-q", str(repo), str(clone), cwd=repo.parent)
    kill_when([str(BIN / "dvc"), "pull", "-j", "1"], clone, clone / ".dvc" / "cache", REMOTE_OBJECTS_BEFORE_KILL,
              extra_env)
    # What arrived is intact; what did not is absent, or empty and writable where the kill fell inside the
    # reflink probe, which DVC re-hashes (it is not read-only), deletes and fetches again.
    arrived = verify(clone, extra_env=extra_env).stdout
    probes = re.findall(r"^left unfinished by an interrupted transfer .*: (\S+): (\S+) bytes", arrived,
                        flags=re.MULTILINE)
    assert all(size == "0" for _, size in probes), arrived
    print(f"objects a killed pull left empty under their own name (the reflink probe): {probes}")
    run("dvc", "pull", "-j", "1", cwd=clone)
    assert "up to date" in run("dvc", "status", cwd=clone)
    assert "in sync" in run("dvc", "status", "-c", cwd=clone)
    assert "every output and cache object matches" in verify(clone, extra_env=extra_env).stdout
    assert (clone / "dvc.lock").read_bytes() == (repo / "dvc.lock").read_bytes()
    loaded = run("python", "-c", "from pathlib import Path; from zh_retrieval.retrieval.encode import load_embedder, "
                 "encode; e = load_embedder(Path('output/finetuned'), 'mean'); print(encode(e, ['测试'], 16).shape)",
                 cwd=clone)
    assert "(1, " in loaded
    return cut_short


def test_an_interrupted_push_and_pull_to_a_local_remote_complete_when_run_again(workspace: dict) -> None:
    """Fault: `dvc push -j 1` to a local-directory remote, SIGKILLed once 8 objects have arrived; then
    `dvc pull -j 1` into a fresh clone, SIGKILLed the same way. Seen: `dvc status -c` lists what is
    missing. Checked: every object that arrived holds the bytes its name says; a killed copy leaves a
    hidden .tmp file, or, killed inside dvc-objects' reflink probe, an empty file under the object's
    name, never a partly written one (in the remote verify names it; in the clone's cache DVC re-hashes
    it because it is writable, and the next pull replaces it); running each again completes; `dvc
    status` and `dvc status -c` are clean and the pulled fine-tuned model loads and encodes."""
    cut_short = interrupted_push_and_pull(workspace["repo"], workspace["root"] / "clone-local",
                                          workspace["remote"], "team")
    assert all(size == "0" for _, size in cut_short), cut_short


def test_an_interrupted_push_and_pull_over_ssh_complete_when_run_again(workspace: dict, ssh_server: dict,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    """The same over SSH (Debian's sshd on 127.0.0.1, DVC's sftp through asyncssh), to its own remote. Here
    the object being written when the push dies is left cut short under its own name (dvc-ssh's put has
    no temporary), and DVC keeps it: `zh_retrieval.verify --remote-name` finds it by its size, and once
    it is deleted there, the push run again completes and the whole remote re-hashes clean."""
    repo = workspace["repo"]
    store = tmp_path / "ssh-store"
    url = f"ssh://root@127.0.0.1:{ssh_server['port']}{store}"
    sh("dvc", "remote", "add", "ssh-team", url, cwd=repo)
    sh("dvc", "remote", "modify", "ssh-team", "keyfile", str(ssh_server["key"]), cwd=repo)
    sh("dvc", "remote", "default", "ssh-team", cwd=repo)
    home = {"HOME": str(ssh_server["home"])}
    try:
        sh("git", "commit", "-q", "-am", "ssh remote", cwd=repo)
        cut_short = interrupted_push_and_pull(repo, tmp_path / "clone-ssh", store, "ssh-team", home)
        print(f"objects a killed push over SSH left cut short (path, bytes): {cut_short}")
    finally:
        sh("git", "reset", "-q", "--hard", "HEAD~1", cwd=repo)
    as_committed(workspace)


def flip_byte(path: Path, keep_times: bool) -> None:
    """Corrupt one byte in place, as a failing disk would: the mode and (optionally) the times put back."""
    stat = path.stat()
    os.chmod(path, 0o644)
    with path.open("r+b") as f:
        f.seek(stat.st_size // 2)
        byte = f.read(1)
        f.seek(stat.st_size // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    os.chmod(path, stat.st_mode)
    if keep_times:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def object_of(repo: Path, output_file: str) -> Path:
    """The cache object a hardlinked workspace file is (same inode)."""
    inode = (repo / output_file).stat().st_ino
    return next(p for p in cache_objects(repo / ".dvc" / "cache") if p.stat().st_ino == inode)


def test_a_corrupted_cache_object_is_found_by_verify_not_by_dvc(workspace: dict) -> None:
    """Fault: one byte of the cached base-model corpus embeddings flipped, times kept (bit rot).
    What DVC sees: nothing; `dvc status` is clean and `dvc repro` runs nothing, because DVC 3 never
    re-hashes a read-only cache object and trusts its state database's (inode, mtime, size). Checked:
    `python -m zh_retrieval.verify` names the file and exits 1; deleting the object and `dvc pull`
    from the team remote brings the good bytes back."""
    repo = workspace["repo"]
    corrupted = object_of(repo, "output/embeddings/base/corpus.npy")
    sh("dvc", "push", cwd=repo)  # the remote holds the good copy
    flip_byte(corrupted, keep_times=True)
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout  # DVC's own check misses it
    found = verify(repo, check=False)
    assert found.returncode == 1
    assert "output/embeddings/base/corpus.npy: differs from the" in found.stdout, found.stdout
    assert f"{corrupted}: corrupted" in found.stdout, found.stdout
    corrupted.unlink()
    (repo / "output/embeddings/base/corpus.npy").unlink(missing_ok=True)
    sh("dvc", "pull", cwd=repo)
    assert "every output and cache object matches" in verify(repo).stdout
    as_committed(workspace)


def test_a_corrupted_object_in_the_remote_is_refused_with_verify_on(workspace: dict, tmp_path: Path) -> None:
    """Fault: one byte of the fine-tuned model's weights flipped in the team remote. What DVC does: with
    the remote's default `verify = false`, `dvc pull` into a fresh clone succeeds and the corrupted
    weights land in the workspace silently; `zh_retrieval.verify` finds them (and the object in the
    remote). With `verify = true` (docs/sharing.md), DVC re-hashes what it downloads and refuses it:
    `dvc pull` fails and the weights never reach the workspace."""
    repo, remote = workspace["repo"], workspace["remote"]
    sh("dvc", "push", cwd=repo)
    weights = object_of(repo, "output/finetuned/model.safetensors")
    in_remote = remote / "files" / "md5" / weights.parent.name / weights.name
    original = in_remote.read_bytes()
    flip_byte(in_remote, keep_times=True)
    try:
        silent = tmp_path / "silent"
        sh("git", "clone", "-q", str(repo), str(silent), cwd=tmp_path)
        sh("dvc", "pull", cwd=silent)  # DVC by itself: success
        assert "up to date" in sh("dvc", "status", cwd=silent).stdout
        found = verify(silent, remote, check=False)
        assert found.returncode == 1
        assert "output/finetuned/model.safetensors: differs from the" in found.stdout, found.stdout
        assert f"{in_remote}: corrupted" in found.stdout, found.stdout

        refused = tmp_path / "refused"
        sh("git", "clone", "-q", str(repo), str(refused), cwd=tmp_path)
        sh("dvc", "remote", "modify", "team", "verify", "true", cwd=refused)
        pulled = sh("dvc", "pull", cwd=refused, check=False)
        assert pulled.returncode != 0
        assert "Checkout failed for following targets" in pulled.stdout + pulled.stderr
        assert not (refused / "output/finetuned/model.safetensors").exists()
    finally:
        os.chmod(in_remote, 0o644)
        in_remote.write_bytes(original)
    as_committed(workspace)
