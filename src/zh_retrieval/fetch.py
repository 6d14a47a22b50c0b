"""fetch: download a hub model or MLDR's Chinese files once, at a pinned revision, into a local directory.

    python -m zh_retrieval.fetch bge-base-zh-v1.5 models/bge-base-zh-v1.5
    python -m zh_retrieval.fetch mldr-zh data/mldr-zh
    python -m zh_retrieval.fetch t2retrieval data/t2retrieval     # C-MTEB's, for the forgetting check
    python -m zh_retrieval.fetch bge-reranker-v2-m3 models/bge-reranker-v2-m3   # the reranker
    python -m zh_retrieval.fetch bge-reranker-base models/bge-reranker-base     # a smaller one
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
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import REVISION_FILE, atomic_dir, write_jsonl

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
        # safetensors only: pickled pytorch_model.bin is never loaded. README.md is the hub's model
        # card: its front matter's license goes into the fine-tuned model's card.
        patterns=("*.json", "vocab.txt", "model.safetensors", "1_Pooling/*", "README.md"),
    ),
    # BGE's first Chinese/English reranker: XLM-RoBERTa base under a one-logit head, 512 positions,
    # ~280 M parameters; the smaller choice for `reranker.base_model` and the teacher.
    "bge-reranker-base": Source(
        repo_id="BAAI/bge-reranker-base",
        repo_type="model",
        revision="2cfc18c9415c912f9d8155881c133215df768a70",
        patterns=("*.json", "sentencepiece.bpe.model", "model.safetensors", "README.md"),
    ),
    # The MLDR preset's reranker and teacher: XLM-RoBERTa under a one-logit head, 8,192 positions.
    # Both rerankers' revisions: the ones that the projects pinning them agree on (no hub is reachable
    # here to read a newer one).
    "bge-reranker-v2-m3": Source(
        repo_id="BAAI/bge-reranker-v2-m3",
        repo_type="model",
        revision="953dc6f6f85a1b2dbfca4c34a2796e7dde08d41e",
        patterns=("*.json", "sentencepiece.bpe.model", "model.safetensors", "README.md"),
    ),
    "mldr-zh": Source(
        repo_id="Shitao/MLDR",
        repo_type="dataset",
        revision="d67138e705d963e346253a80e59676ddb418810a",
        patterns=("mldr-v1.0-zh/*",),
        subdir="mldr-v1.0-zh",
    ),
}


# C-MTEB's T2Retrieval (T2Ranking's passages, general-domain web queries), at the revisions MTEB's
# task metadata pins; converted to MLDR's layout (corpus.jsonl, and its dev qrels' queries split in
# two halves, dev.jsonl and test.jsonl, so the merge weight is chosen on other queries than it is
# reported on) so that `general.dataset` can name it. Its queries and qrels live in two repositories.
GENERAL_SPLIT_SEED = 0  # which half of T2Retrieval's queries is dev: fixed, so every fetch splits alike
T2RETRIEVAL = (
    Source(repo_id="C-MTEB/T2Retrieval", repo_type="dataset", revision="8731a845f1bf500a4f111cf1070785c793d10e64",
           patterns=("data/corpus-*.parquet", "data/queries-*.parquet")),
    Source(repo_id="C-MTEB/T2Retrieval-qrels", repo_type="dataset",
           revision="1c83b8d1544e529875e3f6930f3a1fcf749a8e97", patterns=("data/dev-*.parquet",)),
)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _check_online(target: Path) -> None:
    offline = [name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
               if os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")]
    if offline:
        raise InputError(target, f"{' and '.join(offline)} set: huggingface_hub will not download",
                         fix=f"unset {' '.join(offline)} for this one command; every later stage runs offline")


def _download(source: Source, download: Path, target: Path) -> list[Path]:
    """snapshot_download `source` into `download`; the files under its subdir, or a clear InputError."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RevisionNotFoundError
    from requests.exceptions import RequestException

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
    return files


def fetch(source: Source, target: Path) -> Path:
    """Download `source` into `target` (replaced only on success) and record its revision."""
    _check_online(target)
    with atomic_dir(target) as tmp:
        download = tmp / ".download"
        files = _download(source, download, target)
        root = download / source.subdir if source.subdir else download
        for path in files:
            destination = tmp / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            path.rename(destination)
        shutil.rmtree(download)
        (tmp / REVISION_FILE).write_text(f"{source.repo_id}@{source.revision}\n", encoding="utf-8")
    logger.info("fetched %s@%s into %s (%d files)", source.repo_id, source.revision, target, len(files))
    return target


def _parquet_rows(files: list[Path], prefix: str, columns: tuple[str, ...]) -> list[dict]:
    import pyarrow.parquet as pq  # datasets' dependency

    rows = []
    for path in sorted(f for f in files if f.name.startswith(prefix)):
        table = pq.read_table(path)
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise InputError(path, f"no column {', '.join(missing)} (has {', '.join(table.column_names)})")
        rows += table.select(list(columns)).to_pylist()
    return rows


def fetch_t2retrieval(target: Path, sources: tuple[Source, Source] = T2RETRIEVAL) -> Path:
    """C-MTEB T2Retrieval as an MLDR-layout directory: corpus.jsonl, and its dev qrels' queries (score > 0)
    split into dev.jsonl and test.jsonl, a seeded half each (test takes the odd one)."""
    _check_online(target)
    corpus_source, qrels_source = sources
    with atomic_dir(target) as tmp:
        data_files = _download(corpus_source, tmp / ".download", target)
        qrels_files = _download(qrels_source, tmp / ".download-qrels", target)
        corpus = {str(r["id"]): r["text"] for r in _parquet_rows(data_files, "corpus", ("id", "text"))}
        queries = {str(r["id"]): r["text"]
                   for r in _parquet_rows(data_files, "queries", ("id", "text"))}
        relevant: dict[str, list[str]] = {}
        for row in _parquet_rows(qrels_files, "dev", ("qid", "pid", "score")):
            if row["score"] > 0 and str(row["pid"]) in corpus and str(row["qid"]) in queries:
                relevant.setdefault(str(row["qid"]), []).append(str(row["pid"]))
        if not relevant:
            raise InputError(target, "no qrels row names a query and a passage of the downloaded files")
        write_jsonl(tmp / "corpus.jsonl", [{"docid": d, "text": t} for d, t in corpus.items()])
        query_ids = sorted(relevant)
        dev = set(random.Random(GENERAL_SPLIT_SEED).sample(query_ids, len(query_ids) // 2))
        halves = (("dev", [q for q in query_ids if q in dev]), ("test", [q for q in query_ids if q not in dev]))
        for split, ids in halves:
            write_jsonl(tmp / f"{split}.jsonl", [
                {"query_id": q, "query": queries[q],
                 "positive_passages": [{"docid": d, "text": corpus[d]} for d in relevant[q]], "negative_passages": []}
                for q in ids
            ])
        shutil.rmtree(tmp / ".download")
        shutil.rmtree(tmp / ".download-qrels")
        (tmp / REVISION_FILE).write_text("".join(f"{s.repo_id}@{s.revision}\n" for s in sources), encoding="utf-8")
    logger.info("fetched %s into %s: %d passages, %d dev and %d test queries", corpus_source.repo_id, target,
                len(corpus), len(dev), len(relevant) - len(dev))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", choices=sorted([*PRESETS, "t2retrieval"]),
                        help="what to fetch (or use --repo-id)")
    parser.add_argument("target", type=Path)
    parser.add_argument("--repo-id")
    parser.add_argument("--repo-type", choices=("model", "dataset"), default="model")
    parser.add_argument("--revision", help="a commit hash (overrides the preset's)")
    parser.add_argument("--pattern", action="append", help="files to fetch (glob; repeatable)")
    parser.add_argument("--subdir", help="the repository folder that becomes TARGET")
    args = parser.parse_args()
    if args.preset == "t2retrieval":
        fetch_t2retrieval(args.target)
        return
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
