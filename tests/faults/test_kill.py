"""A kill at any point of any stage: preemption of a job on a shared GPU node.

Fault: SIGKILL of the whole process group of `dvc repro -f -s STAGE` (DVC, the stage's command and
anything it started, torchrun's workers included) at a seeded random moment after DVC starts the
stage, drawn over the stage's own duration in an uninterrupted run (DVC's own work after the
command included) and halved until it falls before the stage ends; two moments for the stages that
take longest.
What the user sees: the job is gone; the next `dvc repro` warns that DVC's lock names a dead process,
removes that entry itself, and runs the stage again (unless the kill cut that lock file short: below).
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
the same bytes, and an unreadable dvc.lock is restored from git. DVC rewrites .dvc/tmp/rwlock in place as
well: a kill while it does (once in a fresh clone, killing evaluate_bm25) leaves it empty, DVC
refuses every command until it is removed, and removed it holds nothing a later command needs.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from workspace import Run, digest, dvc, leftovers, sh, stage_outputs
from workspace import baseline as uninterrupted

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


def recorded_hashes(lock: dict) -> dict:
    """dvc.lock's content less each dependency's and output's size and file count: what DVC compares (a lock
    cut short after an output's md5 keeps an entry without them, and `dvc status` calls it up to date)."""
    return {**lock, "stages": {
        name: {key: [{k: v for k, v in item.items() if k not in ("size", "nfiles")} for item in value or []]
               if key in ("deps", "outs") else value for key, value in entry.items()}
        for name, entry in lock["stages"].items()}}


def lock_damage(repo: Path, expected: dict) -> str | list[str] | None:
    """What a kill did to dvc.lock: "unreadable", the stages whose entries it lost or cut short, or None."""
    try:
        stages = locked((repo / "dvc.lock").read_bytes()).get("stages") or {}
    except Exception:  # cut inside a line: not YAML any more
        return "unreadable"
    damaged = sorted(name for name, entry in expected["stages"].items() if stages.get(name) != entry)
    return damaged or None


def unreadable_lock(run: Run) -> bool:
    return run.returncode != 0 and any(f"{CORRUPTED_LOCK}'{what}" in run.log for what in LOCK_UNREADABLE)


# How DVC reports .dvc/tmp/rwlock cut short: "Unable to read RWLock-file '.dvc/tmp/rwlock'. JSON structure is
# corrupted" (dvc/rwlock.py, RWLockFileCorruptedError).
RWLOCK = Path(".dvc") / "tmp" / "rwlock"
RWLOCK_UNREADABLE = f"Unable to read RWLock-file '{RWLOCK}'"


def unreadable_rwlock(run: Run) -> bool:
    return run.returncode != 0 and RWLOCK_UNREADABLE in run.log


def repair_lock(repo: Path, damage: str | list[str], what: str) -> str:
    """A plain `dvc repro` after dvc.lock was cut short (the committed dvc.lock first, where DVC cannot read
    it): only a stage whose entry was lost or cut short may run again, one the run-cache cannot restore
    (check_params, whose output persists, which DVC's _can_hash refuses; the report, seen once in a fresh
    clone). Its bytes are checked by the caller; a stage whose entry survived must not run at all."""
    rest, refused = dvc(repo, "repro"), ""
    if unreadable_lock(rest):
        refused = "DVC cannot read it: git checkout dvc.lock; "
        sh("git", "checkout", "dvc.lock", cwd=repo)
        rest = dvc(repo, "repro")
    assert rest.returncode == 0, f"{what}:\n{rest.log[-3000:]}"
    damaged = set(damage) if isinstance(damage, list) else set()
    assert rest.ran() <= damaged, f"{what}: dvc repro ran {rest.ran() - damaged} again"
    restored = re.findall(r"Stage '([^']+)' is cached", rest.log)
    return (f"{refused}dvc.lock lost or cut {len(damaged)} entries: {len(restored)} restored from the run-cache "
            f"({', '.join(restored)}), {', '.join(sorted(rest.ran())) or 'none'} re-run")


def recover(repo: Path, stage: str, expected_lock: dict) -> list[str]:
    """What a user does after the kill, and what DVC needed: the killed stage run again for real (forced: DVC
    would otherwise check its outputs out of the cache); where the kill cut dvc.lock short, a plain
    `dvc repro` for the entries it lost or cut, or the committed dvc.lock where it is unreadable. Returns what
    had to be repaired."""
    repaired = []
    damage = lock_damage(repo, expected_lock)
    rerun = dvc(repo, "repro", "-f", "-s", stage)
    if unreadable_rwlock(rerun):
        # DVC rewrites .dvc/tmp/rwlock in place too (open "w", dvc/rwlock.py's _edit_rwlock), as each stage
        # starts and ends: a kill between the open and the dump leaves it empty, and DVC refuses it. It lists
        # only what running DVC commands hold; none runs now, so it goes, as DVC's own lock message advises.
        repaired.append(f"{RWLOCK} cut short, unreadable: rm {RWLOCK}")
        (repo / RWLOCK).unlink()
        rerun = dvc(repo, "repro", "-f", "-s", stage)
    if unreadable_lock(rerun):
        # DVC writes dvc.lock in place (open "w+", dvc/utils/serialize/_common.py): a kill mid-write leaves
        # it truncated. It is committed, and the run-cache holds every stage that ran since: restore, re-run.
        repaired.append(f"dvc.lock cut short, unreadable ({rerun.log.splitlines()[0][:80]}): git checkout dvc.lock")
        sh("git", "checkout", "dvc.lock", cwd=repo)
        rerun = dvc(repo, "repro", "-f", "-s", stage)
    assert rerun.returncode == 0, f"after killing {stage}:\n{rerun.log[-3000:]}"
    assert stage in rerun.started, f"after killing {stage}, its command did not run again:\n{rerun.log[-3000:]}"
    if damage is not None:
        repaired.append(repair_lock(repo, damage, f"after killing {stage}"))
    return repaired


def recovered_as_uninterrupted(repo: Path, baseline: dict, what: str) -> list[str]:
    """dvc.lock records the uninterrupted run's hashes, every output has its bytes, git and the workspace are
    clean. Returns the entries DVC kept without an output's size or file count (harmless: it compares hashes)."""
    now, expected = locked((repo / "dvc.lock").read_bytes()), locked(baseline["lock"])
    assert recorded_hashes(now) == recorded_hashes(expected), f"{what}: dvc.lock records other hashes after recovery"
    kept_short = sorted(name for name, entry in expected["stages"].items() if now["stages"][name] != entry)
    sh("git", "checkout", "dvc.lock", cwd=repo)  # the same hashes; the committed order and sizes again
    changed = sh("git", "status", "--porcelain", cwd=repo).stdout
    assert changed == "", f"{what}: after recovery git sees\n{changed}"
    assert leftovers(repo) == [], f"{what}: left {leftovers(repo)}"
    for path, digest_expected in baseline["digests"].items():
        assert digest(repo / path) == digest_expected, f"{what}: {path} differs after recovery"
    return kept_short


ENTRY = re.compile(r"^  (\S+):$")
LINE_KEY = re.compile(r"^(\s*)(- )?([^:\s]+):")


def cut_points(lock_text: str) -> tuple[str, list[int]]:
    """The last entry of dvc.lock with dependencies, params and one output, a directory, last in its entry, and
    the line counts at which to cut the file in it: just before it, and after the first line of each kind it
    holds (its key, its cmd, a dependency's path, hash, md5, size and file count, a param, the output's path,
    hash, md5, size, file count). Its one output makes the cut after its md5 the entry's last hash."""
    lines = lock_text.splitlines()
    starts = [i for i, line in enumerate(lines) if ENTRY.match(line)] + [len(lines)]
    entries = [(ENTRY.match(lines[a]).group(1), a, b) for a, b in zip(starts, starts[1:])]

    def one_directory_output(start: int, end: int) -> bool:
        outs = next((i for i in range(start, end) if lines[i] == "    outs:"), end)
        return (sum(lines[i].startswith("    - path:") for i in range(outs, end)) == 1
                and any(lines[i].strip().startswith("nfiles:") for i in range(outs, end)))

    name, start, end = [(n, a, b) for n, a, b in entries
                        if all(any(lines[i].startswith(f"    {key}:") for i in range(a, b))
                               for key in ("deps", "params", "outs")) and one_directory_output(a, b)][-1]
    cuts, kinds, section = [start], set(), "key"
    for i in range(start, end):
        match = LINE_KEY.match(lines[i])
        if match and len(match.group(1)) == 4 and not match.group(2):
            section = match.group(3)
        kind = ((section, len(match.group(1)), bool(match.group(2)), None if section == "params" else match.group(3))
                if match else (section, "continued"))
        if kind not in kinds:
            kinds.add(kind)
            cuts.append(i + 1)
    return name, cuts


def test_dvc_lock_cut_short_anywhere_in_an_entry_is_recovered_by_dvc_repro(baseline: dict) -> None:
    """DVC writes dvc.lock in place, so a kill can cut it after any line: between entries, in a key, in a list.
    Cut at each kind of line of one entry, a plain `dvc repro` (after `git checkout dvc.lock` where DVC cannot
    read it) runs nothing whose entry survived, and the workspace is the uninterrupted run's again."""
    repo, text = baseline["repo"], baseline["lock"].decode("utf-8")
    stage, cuts = cut_points(text)
    lines = text.splitlines(keepends=True)
    report = []
    for cut in cuts:
        (repo / "dvc.lock").write_text("".join(lines[:cut]), encoding="utf-8")
        damage = lock_damage(repo, locked(baseline["lock"]))
        what = f"dvc.lock cut after line {cut} ({lines[cut - 1].strip()[:50]})"
        repaired = repair_lock(repo, damage, what)
        kept_short = recovered_as_uninterrupted(repo, baseline, what)
        report.append(f"{what}: {repaired}" + (f"; kept {', '.join(kept_short)} without sizes" if kept_short else ""))
    print(f"{len(cuts)} cuts in {stage}'s entry:\n" + "\n".join(report))
    assert len(cuts) >= 10, report  # the entry's kinds of line: key, cmd, deps, params, outs and their fields
    assert any("; kept" in line for line in report), "no cut left an entry DVC keeps without its sizes"
    assert any(re.search(r"[1-9]\d* restored from the run-cache", line) for line in report), \
        "no cut made DVC restore an entry from the run-cache"
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout


RWLOCK_CUTS = {  # what a kill can leave of the file: open("w") empties it, json.dump writes it in pieces
    "emptied": "",
    "cut inside the dump": '{"write": {"output/eval/bm25": {"pid": 4',
}


def test_dvc_rwlock_cut_short_stops_dvc_until_it_is_removed(baseline: dict) -> None:
    """A kill while DVC rewrites .dvc/tmp/rwlock (in place, as each stage starts and ends) leaves it empty or cut,
    and DVC then refuses to run anything, even a stage with nothing to do, with one line naming the file.
    The file lists only what running DVC commands hold: with none running, `rm .dvc/tmp/rwlock` and the next
    `dvc repro` finds everything up to date and runs nothing."""
    repo = baseline["repo"]
    for what, text in RWLOCK_CUTS.items():
        (repo / RWLOCK).write_text(text, encoding="utf-8")
        refused = dvc(repo, "repro")
        assert unreadable_rwlock(refused), f"rwlock {what}: DVC did not refuse it:\n{refused.log[-3000:]}"
        assert refused.ran() == set(), f"rwlock {what}: DVC ran {refused.ran()}"
        assert (repo / "dvc.lock").read_bytes() == baseline["lock"], f"rwlock {what}: dvc.lock changed"
        (repo / RWLOCK).unlink()
        again = dvc(repo, "repro")
        assert again.returncode == 0, f"rwlock {what}, then removed:\n{again.log[-3000:]}"
        assert again.ran() == set(), f"rwlock {what}, then removed: dvc repro ran {again.ran()}"
        assert recovered_as_uninterrupted(repo, baseline, f"rwlock {what}, then removed") == []
    assert "up to date" in sh("dvc", "status", cwd=repo).stdout


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
        kept_short = recovered_as_uninterrupted(repo, baseline, f"after killing {stage}")
        if kept_short:
            report.append(f"  dvc.lock kept {', '.join(kept_short)} without an output's size (same hashes)")
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
