"""verify: re-hash every output dvc.lock records, in the workspace and in DVC's cache (or a local remote).

    python -m zh_retrieval.verify                    # the workspace's outputs and the cache objects behind them
    python -m zh_retrieval.verify --remote DIR       # also re-hash every object in a local-directory remote
    python -m zh_retrieval.verify --remote-name team # also compare the size of every object a remote (any
                                                     # kind: SSH, S3...) holds with the cache's, over its own
                                                     # connection: what a killed push over SSH leaves cut short

DVC trusts its cache: an object is read-only (0444), so DVC 3 never re-hashes it (dvc-data's
`LocalHashFileDB.check` returns early on that mode), and its state database keys hashes by inode,
mtime and size. A flipped bit on disk, or a byte changed with the mtime put back, is then invisible
to `dvc status`, `dvc repro`, `dvc checkout` and `dvc push` (which uploads the corrupted bytes under
the good name); with the project's hardlinked cache, the workspace file is the same inode. A
corrupted object in a remote reaches a clone silently unless the remote has `verify = true`
(docs/sharing.md). And dvc-ssh uploads an object under its own name, not through a temporary: a push
killed mid-file leaves it cut short there, and the next push, which only asks whether the name exists,
keeps it. This command reads every byte and says which path is wrong; exit 1 if any. Temporary files
a killed transfer left (`.*.tmp`) are listed, not counted as corruption.

A transfer into a local store first tries a reflink: dvc-objects creates the object's own name, asks
for a clone (FICLONE) and unlinks the name when the filesystem refuses. A kill in between leaves an
empty, writable file under the object's name. In the repository's cache that is harmless: DVC
re-hashes every object that is not read-only before it trusts it (`LocalHashFileDB.check`), deletes
it and fetches it again, so it is listed as unfinished, not counted. In a local remote DVC trusts the
name, so there it is a problem like any other (delete it there and push again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

DIR_SUFFIX = ".dir"
CACHE_MODE = 0o444  # dvc-data's LocalHashFileDB.CACHE_MODE: an object DVC finished and protects


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def object_path(store: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object: files/md5/<first two hex digits>/<the rest>."""
    return store / "files" / "md5" / md5[:2] / md5[2:]


@dataclass
class Findings:
    checked_outputs: int = 0
    absent_outputs: int = 0
    checked_objects: int = 0
    problems: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # writable cache objects DVC will re-hash and replace
    read: set[Path] = field(default_factory=set)  # objects already hashed: each is read once


@dataclass
class LockedOutput:
    stage: str
    path: str  # relative to the repository
    md5: str  # as dvc.lock records it; a directory's ends in .dir
    cached: bool  # False: `cache: false` in dvc.yaml (git tracks it)


def locked_outputs(repo: Path) -> tuple[Path, list[LockedOutput]]:
    """(the repository's cache directory, every output dvc.lock records), read through DVC's own index."""
    from dvc.repo import Repo

    outputs = []
    with Repo(str(repo)) as dvc_repo:
        root = Path(dvc_repo.root_dir)
        for stage in dvc_repo.index.stages:
            for out in stage.outs:
                # DVC 3's files/md5 objects; a DVC 2 output (md5-dos2unix) lives in the legacy cache instead.
                if out.hash_info and out.hash_info.value and out.hash_info.name == "md5":
                    path = Path(out.fs_path).relative_to(root).as_posix()
                    outputs.append(LockedOutput(stage.addressing, path, out.hash_info.value, out.use_cache))
        return Path(dvc_repo.cache.local_cache_dir), outputs


def check_remote_sizes(repo: Path, name: str, cache: Path, findings: Findings) -> None:
    """Every object of the named remote that the cache also holds has the cache object's size."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        remote = dvc_repo.cloud.get_remote_odb(name)
        for oid in remote.all():
            local = object_path(cache, oid)
            if not local.is_file():
                continue
            path = remote.oid_to_path(oid)
            size = remote.fs.info(path)["size"]
            findings.checked_objects += 1
            if size != local.stat().st_size:
                findings.problems.append(f"{path}: cut short: {size:,} bytes of {local.stat().st_size:,} in remote "
                                         f"{name!r} (delete it there and run `dvc push` again)")


def report_mismatch(path: Path, actual: str, findings: Findings, what: str | None, in_cache: bool) -> None:
    """An object whose bytes do not hash to its name: unfinished if DVC itself will not trust it, else corrupted."""
    detail = f" ({what})" if what else ""
    if in_cache and stat.S_IMODE(path.stat().st_mode) != CACHE_MODE:
        findings.unfinished.append(f"{path}: {path.stat().st_size:,} bytes, writable{detail}")
        return
    findings.problems.append(f"{path}: corrupted: its bytes hash to {actual}{detail}")


def check_object(store: Path, md5: str, findings: Findings, what: str) -> bytes | None:
    """Whether the object named md5 exists in the store with those bytes; a .dir object's bytes are returned."""
    path = object_path(store, md5)
    if not path.is_file():
        findings.problems.append(f"{path}: missing ({what})")
        return None
    findings.checked_objects += path not in findings.read
    findings.read.add(path)
    actual = md5_of(path)
    if actual != md5.removesuffix(DIR_SUFFIX):
        report_mismatch(path, actual, findings, what, in_cache=True)
        return None
    return path.read_bytes() if md5.endswith(DIR_SUFFIX) else b""


def verify_workspace(repo: Path, cache: Path, outputs: list[LockedOutput], findings: Findings) -> None:
    for out in outputs:
        path, what = repo / out.path, f"{out.path} of stage {out.stage}"
        if not out.cached:  # not in the cache; git tracks it, and `git status` shows a change
            continue
        if not path.exists():  # not produced or pulled yet: nothing to be wrong
            findings.absent_outputs += 1
            continue
        findings.checked_outputs += 1
        if not out.md5.endswith(DIR_SUFFIX):
            if path.is_file() and md5_of(path) != out.md5:
                findings.problems.append(f"{out.path}: differs from the {out.md5} dvc.lock records ({out.stage}; "
                                         "corrupted, edited or not checked out: `dvc status` tells the last two)")
            check_object(cache, out.md5, findings, what)
            continue
        listing = check_object(cache, out.md5, findings, what)
        if listing is None:
            continue
        for entry in json.loads(listing):
            relpath, entry_md5 = entry["relpath"], entry["md5"]
            check_object(cache, entry_md5, findings, f"{out.path}/{relpath}")
            file = path / relpath
            if file.is_file() and md5_of(file) != entry_md5:
                findings.problems.append(f"{out.path}/{relpath}: differs from the {entry_md5} its "
                                         f"directory's listing records ({out.stage})")


def verify_store(store: Path, findings: Findings, in_cache: bool) -> None:
    """Every object a store holds hashes to its name (a remote holds objects no dvc.lock of ours may name)."""
    root = store / "files" / "md5"
    if store.exists() and not root.is_dir() and any(store.iterdir()):
        raise SystemExit(f"{store}: not a DVC 3 cache or local remote (no files/md5 inside)")
    for path in sorted(root.glob("*/*")) if root.is_dir() else []:
        if path.name.startswith(".") or path.name.endswith(".tmp"):
            findings.temporaries.append(str(path))
            continue
        if path in findings.read:
            continue
        findings.read.add(path)
        name = path.parent.name + path.name
        findings.checked_objects += 1
        actual = md5_of(path)
        if actual != name.removesuffix(DIR_SUFFIX):
            report_mismatch(path, actual, findings, None, in_cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--remote", type=Path, action="append", default=[],
                        help="a local-directory remote whose every object is re-hashed too")
    parser.add_argument("--remote-name", action="append", default=[],
                        help="a remote of this repository (any kind) whose objects' sizes are compared")
    args = parser.parse_args()
    for remote in args.remote:
        if not remote.is_dir():
            raise SystemExit(f"{remote}: no such directory (--remote takes a local remote's directory)")
    findings = Findings()
    cache, outputs = locked_outputs(args.repo)
    verify_workspace(args.repo, cache, outputs, findings)
    verify_store(cache, findings, in_cache=True)
    for remote in args.remote:
        verify_store(remote, findings, in_cache=False)
    for name in args.remote_name:
        check_remote_sizes(args.repo, name, cache, findings)
    for temporary in findings.temporaries:
        print(f"left by an interrupted transfer (not used; `dvc gc` removes it): {temporary}")
    for unfinished in findings.unfinished:
        print(f"left unfinished by an interrupted transfer (DVC re-hashes it, deletes it and fetches it again "
              f"on the next `dvc pull`): {unfinished}")
    if findings.problems:
        print("\n".join(findings.problems))
        print(f"{len(findings.problems)} problems in {findings.checked_outputs} outputs and "
              f"{findings.checked_objects} cache objects: delete the corrupted objects and run "
              "`dvc pull` (or `dvc repro`) to get them back")
        sys.exit(1)
    absent = f" ({findings.absent_outputs} not in the workspace)" if findings.absent_outputs else ""
    print(f"every output and cache object matches: {findings.checked_outputs} outputs{absent}, "
          f"{findings.checked_objects} objects read")


if __name__ == "__main__":
    main()
