"""A kill at any point of any stage: preemption of a job on a shared GPU node.

Fault: SIGKILL of the whole process group of `dvc repro -f -s STAGE` (DVC, the stage's command and
anything it started, torchrun's workers included) at a seeded random moment after DVC starts the
stage, drawn over the stage's own duration in an uninterrupted run (DVC's own work after the
command included) and halved until it falls before the stage ends; two moments for the stages that
take longest.
What the user sees: the job is gone; the next `dvc repro` warns that DVC's lock names a dead process,
removes that entry itself, and runs the stage again.
Checked: while the stage is dead, each of its output paths is absent or byte-identical to the
uninterrupted run's (never half-written). After `dvc repro -f -s STAGE` (the stage's command really
runs again: without -f, DVC finds the stage's dvc.lock entry intact and checks its outputs out of the
cache, "Stage ... is cached - skipping run", even with --no-run-cache) and a plain `dvc repro`, which
has nothing left to run:
every output is byte-identical to the uninterrupted run's, dvc.lock records the same hashes, git sees
no change, no temporary sibling or partial directory is left, `dvc status` is clean, and the cache
holds every object with the bytes its name says (`zh_retrieval.verify`, and a push to a local remote
that `dvc status -c` finds in sync).
Found on the way: DVC writes dvc.lock in place, so a kill while it does truncates it; the run-cache
then restores the stages whose entries were lost (printed in the test's report), except those it
cannot restore (check_params, whose output persists; once, the report), which run again and write
the same bytes, and an unreadable dvc.lock is restored from git.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from workspace import baseline as uninterrupted
from workspace import digest, dvc, leftovers, sh, stage_outputs

pytestmark = pytest.mark.faults

SEED = 26
LONG_STAGES = 3  # the longest ones get a second moment


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    repo, durations = uninterrupted(tmp_path_factory, "kill")
    outputs = stage_outputs(repo)
    return {
        "repo": repo,
        "durations": durations,
        "lock": (repo / "dvc.lock").read_bytes(),
        "outputs": outputs,
        "digests": {path: digest(repo / path) for paths in outputs.values() for path in paths},
    }


def kill_moments(durations: dict[str, float]) -> list[tuple[str, list[float]]]:
    """(stage, [seconds after its start]) for every stage: one seeded moment each, two for the longest."""
    rng = random.Random(SEED)
    longest = set(sorted(durations, key=durations.get)[-LONG_STAGES:])
    return [(stage, sorted(rng.uniform(0.0, seconds) for _ in range(2 if stage in longest else 1)))
            for stage, seconds in durations.items()]


def locked(text: bytes) -> dict:
    """dvc.lock's content, whatever the order of its stages (DVC appends an entry it writes anew)."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text.decode("utf-8"))


CORRUPTED_LOCK = "dvc.lock"
# How DVC reports a dvc.lock cut short: "'./dvc.lock' validation failed." (a key without its value) or
# "unable to read: './dvc.lock', YAML file structure is corrupted" (a line cut in two).
LOCK_UNREADABLE = (" validation failed", ", YAML file structure is corrupted")


def lock_damage(repo: Path, expected: dict) -> str | list[str] | None:
    """What a kill did to dvc.lock: "unreadable", the stages whose entries it lost, or None."""
    try:
        stages = locked((repo / "dvc.lock").read_bytes()).get("stages") or {}
    except Exception:  # cut inside a line: not YAML any more
        return "unreadable"
    lost = sorted(set(expected["stages"]) - set(stages))
    return lost or None


def recover(repo: Path, stage: str, expected_lock: dict) -> list[str]:
    """What a user does after the kill, and what DVC needed: the killed stage run again for real (forced: DVC
    would otherwise check its outputs out of the cache); where the kill cut dvc.lock short, a plain
    `dvc repro` for the entries it lost, or the committed dvc.lock where it is unreadable. Returns what had
    to be repaired."""
    repaired = []
    damage = lock_damage(repo, expected_lock)
    rerun = dvc(repo, "repro", "-f", "-s", stage)
    if rerun.returncode != 0 and any(f"{CORRUPTED_LOCK}'{what}" in rerun.log for what in LOCK_UNREADABLE):
        # DVC writes dvc.lock in place (open "w+", dvc/utils/serialize/_common.py): a kill mid-write leaves
        # it truncated. It is committed, and the run-cache holds every stage that ran since: restore, re-run.
        repaired.append(f"dvc.lock cut short, unreadable ({rerun.log.splitlines()[0][:80]}): git checkout dvc.lock")
        sh("git", "checkout", "dvc.lock", cwd=repo)
        rerun = dvc(repo, "repro", "-f", "-s", stage)
    assert rerun.returncode == 0, f"after killing {stage}:\n{rerun.log[-3000:]}"
    assert stage in rerun.started, f"after killing {stage}, its command did not run again:\n{rerun.log[-3000:]}"
    if damage is not None:
        rest = dvc(repo, "repro")
        assert rest.returncode == 0, f"after killing {stage}:\n{rest.log[-3000:]}"
        # Only a stage whose entry was lost may run again: one the run-cache cannot restore (check_params, whose
        # output persists, which DVC's _can_hash refuses; the report, seen once in a fresh clone). What it writes
        # is checked byte for byte below; a stage whose entry survived must not run at all.
        lost = set(damage) if isinstance(damage, list) else set()
        assert rest.ran() <= lost, f"after killing {stage}, dvc repro ran {rest.ran() - lost} again"
        restored = re.findall(r"Stage '([^']+)' is cached", rest.log)
        repaired.append(f"dvc.lock lost {len(damage)} entries: {len(restored)} restored from the run-cache "
                        f"({', '.join(restored)}), {', '.join(sorted(rest.ran())) or 'none'} re-run")
    return repaired



def test_every_stage_killed_at_random_moments_recovers_byte_for_byte(baseline: dict) -> None:
    repo, outputs, digests = baseline["repo"], baseline["outputs"], baseline["digests"]
    report = []
    for stage, moments in kill_moments(baseline["durations"]):
        for drawn in moments:
            for moment in (drawn, drawn / 2, drawn / 4, 0.0):  # earlier, where the stage ran faster than drawn
                run = dvc(repo, "repro", "-f", "-s", stage, kill_at=(stage, moment))
                for path in outputs[stage]:  # while it is dead
                    assert digest(repo / path) in (None, digests[path]), \
                        f"{stage} killed at {moment:.1f} s left {path} half-written"
                if run.killed:
                    break
            report.append(f"{stage} at {moment:.1f} s: {'killed' if run.killed else 'finished first'}")
        report += [f"  {line}" for line in recover(repo, stage, locked(baseline["lock"]))]
        assert locked((repo / "dvc.lock").read_bytes()) == locked(baseline["lock"]), \
            f"{stage}: dvc.lock records other hashes after recovery"
        sh("git", "checkout", "dvc.lock", cwd=repo)  # the same content; the committed order again
        changed = sh("git", "status", "--porcelain", cwd=repo).stdout
        assert changed == "", f"{stage}: after recovery git sees\n{changed}"
        assert leftovers(repo) == [], f"{stage}: left {leftovers(repo)}"
        for path, expected in digests.items():
            assert digest(repo / path) == expected, f"{stage}: {path} differs after recovery"
    print("\n".join(report))
    assert not [line for line in report if line.endswith("finished first")], "\n".join(report)
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout
    verified = sh("python", "-m", "zh_retrieval.verify", cwd=repo)
    assert "every output and cache object matches" in verified.stdout
    remote = repo.parent / "remote"  # and the cache is whole: everything dvc.lock names pushes, and matches
    sh("dvc", "remote", "add", "-d", "check", str(remote), cwd=repo)
    sh("dvc", "push", cwd=repo)
    assert "in sync" in sh("dvc", "status", "-c", cwd=repo).stdout
    assert "every output and cache object matches" in sh("python", "-m", "zh_retrieval.verify", "--remote", remote,
                                                          cwd=repo).stdout
