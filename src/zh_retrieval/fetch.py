"""fetch: download a hub model or MLDR's Chinese files once, at a pinned revision, into a local directory.

    python -m zh_retrieval.fetch bge-base-zh-v1.5 models/bge-base-zh-v1.5
    python -m zh_retrieval.fetch mldr-zh data/mldr-zh
    dvc add models/bge-base-zh-v1.5 data/mldr-zh && dvc push     # then every machine can `dvc pull`

Everything downstream reads the local directories, so a machine without hub access runs the
pipeline from `dvc pull`. `HF_ENDPOINT` points the download at a mirror. The directory appears
only when every file has arrived (no partial directory on a failure), with a REVISION file
(`<repo id>@<commit>`) that the results report quotes. Any other repository:
`--repo-id ORG/NAME --revision COMMIT --pattern '*.json' --pattern model.safetensors ...`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import REVISION_FILE, atomic_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    repo_id: str
    repo_type: str  # "model" or "dataset"
    revision: str  # a commit hash: a branch name would move under the pipeline's feet
    patterns: tuple[str, ...]
    subdir: str | None = None  # the folder of the repository that becomes the target directory


# Revisions as pinned by MTEB's model and task metadata (bge_models.py, MultiLongDocRetrieval).
PRESETS = {
    "bge-base-zh-v1.5": Source(
        repo_id="BAAI/bge-base-zh-v1.5",
        repo_type="model",
        revision="f03589ceff5aac7111bd60cfc7d497ca17ecac65",
        # safetensors only: pickled pytorch_model.bin is never loaded
        patterns=("*.json", "vocab.txt", "model.safetensors", "1_Pooling/*"),
    ),
    "mldr-zh": Source(
        repo_id="Shitao/MLDR",
        repo_type="dataset",
        revision="d67138e705d963e346253a80e59676ddb418810a",
        patterns=("mldr-v1.0-zh/*",),
        subdir="mldr-v1.0-zh",
    ),
}


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def fetch(source: Source, target: Path) -> Path:
    """Download `source` into `target` (replaced only on success) and record its revision."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RevisionNotFoundError
    from requests.exceptions import RequestException

    offline = [name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
               if os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")]
    if offline:
        raise InputError(target, f"{' and '.join(offline)} set: huggingface_hub will not download",
                         fix=f"unset {' '.join(offline)} for this one command; every later stage runs offline")
    with atomic_dir(target) as tmp:
        download = tmp / ".download"
        try:
            snapshot_download(repo_id=source.repo_id, repo_type=source.repo_type, revision=source.revision,
                              allow_patterns=list(source.patterns), local_dir=download)
        except RevisionNotFoundError:
            raise InputError(target, f"{source.repo_id} has no revision {source.revision} on {endpoint()}",
                             fix="pass --revision with a commit of that repository") from None
        except (LocalEntryNotFoundError, HfHubHTTPError, RequestException, OSError) as error:
            raise InputError(target, f"cannot download {source.repo_id}@{source.revision} from {endpoint()}: "
                             f"{type(error).__name__}: {str(error).splitlines()[0][:300]}",
                             fix="set HF_ENDPOINT to a reachable mirror, or `dvc pull` the directory from the "
                                 "team's remote, or point params.yaml at a local copy") from None
        root = download / source.subdir if source.subdir else download
        files = [p for p in root.rglob("*") if p.is_file() and ".cache" not in p.relative_to(download).parts]
        if not files:
            raise InputError(target, f"{source.repo_id}@{source.revision} has no file matching "
                             f"{', '.join(source.patterns)}")
        for path in files:
            destination = tmp / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            path.rename(destination)
        shutil.rmtree(download)
        (tmp / REVISION_FILE).write_text(f"{source.repo_id}@{source.revision}\n", encoding="utf-8")
    logger.info("fetched %s@%s into %s (%d files)", source.repo_id, source.revision, target, len(files))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="what to fetch (or use --repo-id)")
    parser.add_argument("target", type=Path)
    parser.add_argument("--repo-id")
    parser.add_argument("--repo-type", choices=("model", "dataset"), default="model")
    parser.add_argument("--revision", help="a commit hash (overrides the preset's)")
    parser.add_argument("--pattern", action="append", help="files to fetch (glob; repeatable)")
    parser.add_argument("--subdir", help="the repository folder that becomes TARGET")
    args = parser.parse_args()
    if args.preset:
        source = PRESETS[args.preset]
        if args.revision:
            source = Source(source.repo_id, source.repo_type, args.revision, source.patterns, source.subdir)
    elif args.repo_id and args.revision and args.pattern:
        source = Source(args.repo_id, args.repo_type, args.revision, tuple(args.pattern), args.subdir)
    else:
        parser.error("give a preset, or --repo-id with --revision and at least one --pattern")
    fetch(source, args.target)


if __name__ == "__main__":
    run_stage(main)
