"""The CPU stages at MLDR zh's size, through the pipeline's own code: wall time and peak RSS of each.

    python benchmarks/scale.py                          # 20,000 documents, then 200,000 (MLDR zh's size)
    python benchmarks/scale.py --documents 2000         # a quick look
    python benchmarks/scale.py --documents 300 --train-queries 100 --test-queries 20   # what the test runs
    python benchmarks/scale.py --keep /some/dir         # keep the generated data there (~3 GB per 200k)
    python benchmarks/scale.py --documents 200000 --only prepare cut mine-cutting mine   # mine, before and after

A synthetic dataset in MLDR's layout is generated into a temporary directory, never committed:
documents of 2,000-6,500 (mean ~4,250) characters strung from jieba's dictionary words drawn by
their corpus frequency (a real word distribution, so segmentation and BM25 work as on real text),
and 10,000 train and 800 test queries, each a 12-20 character span of its positive document. The
embeddings are random 768-dimensional unit vectors in embed's format: one per passage, cut as
`split_into_passages` cuts at 512 tokens with 64 of overlap (~10 a document, ~2 M in all, fp16),
and queries near one passage of their positive. Encoding itself is not measured here (it is a
GPU job; benchmarks/gpu_encode.py). Each stage runs in its own process, as DVC runs it:

    prepare          python -m zh_retrieval.stages.prepare (validates everything, writes the query files)
    evaluate_bm25    python -m zh_retrieval.stages.evaluate_bm25: jieba over the whole corpus, index, 800 queries
    cut              python -m zh_retrieval.stages.cut: every document cut into passages and tokenized once
    mine-cutting     mining.miner.mine_with_vectors without the cut: BM25 passage positives, exact MaxP
                     search of 10,000 queries over every passage, guard, train.jsonl, and the passages of the
                     documents it takes texts from cut again (what mine did before the cut stage)
    mine             the same reading the passages' spans from `cut`, as the pipeline's mine does
    mine's search with guard: truncated
                     retrieval.search.search (faiss, exact): the 10,000 queries over the document
                     vectors, 1,000 deep, which `mine.guard: truncated` searches instead of the passages
    evaluate         retrieval.evaluation.score_vectors, 800 queries, truncated and MaxP (base, then fine-tuned)
    evaluate_hybrid  python -m zh_retrieval.stages.evaluate_hybrid
    report           python -m zh_retrieval.stages.report

Peak RSS is the child's own (ru_maxrss from wait4), so it counts exactly what the stage held.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "models" / "zh-mini-embedder"  # BERT's Chinese vocabulary: one token per Chinese character
DIM = 768
MEAN_CHARS, MIN_CHARS, MAX_CHARS = 4250, 2000, 6500
TRAIN_QUERIES, TEST_QUERIES = 10_000, 800
PASSAGE_MAX_LEN, OVERLAP = 512, 64


def dictionary_words() -> tuple[np.ndarray, np.ndarray]:
    """jieba's dictionary words made only of Chinese characters, and their corpus frequencies as probabilities."""
    import jieba

    words, counts = [], []
    for line in jieba.get_dict_file().read().decode("utf-8").splitlines():
        word, count = line.split(" ")[:2]
        if all("\u4e00" <= c <= "\u9fa5" for c in word):
            words.append(word)
            counts.append(float(count))
    # Punctuation, so documents have sentences: about one comma every 12 words, a full stop every 30.
    total = sum(counts)
    words += ["，", "。"]
    counts += [total / 12, total / 30]
    probabilities = np.array(counts) / sum(counts)
    return np.array(words, dtype=object), probabilities


def generate_dataset(out_dir: Path, documents: int, train_queries: int = TRAIN_QUERIES,
                     test_queries: int = TEST_QUERIES, seed: int = 0) -> np.ndarray:
    """Write corpus.jsonl and train, dev and test.jsonl (dev a quarter of test's size, as MLDR zh's 200 to 800);
    returns each document's length in characters."""
    rng = np.random.default_rng(seed)
    words, probabilities = dictionary_words()
    mean_word = float(np.dot(probabilities, [len(w) for w in words]))
    cumulative = np.cumsum(probabilities)  # searched per draw: rng.choice(p=...) would redo it per document
    out_dir.mkdir(parents=True)
    lengths = np.empty(documents, dtype=np.int64)
    spans: dict[int, str] = {}
    dev_queries = max(1, test_queries // 4)
    query_docs = rng.choice(documents, size=train_queries + dev_queries + test_queries,
                            replace=documents < 2 * train_queries)
    wanted = set(query_docs.tolist())
    with (out_dir / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for i in range(documents):
            target = int(rng.integers(MIN_CHARS, MAX_CHARS + 1))
            drawn = np.searchsorted(cumulative, rng.random(int(target / mean_word)) * cumulative[-1], side="right")
            text = "".join(words[drawn])
            lengths[i] = len(text)
            if i in wanted:
                spans[i] = text
            f.write(json.dumps({"docid": f"doc-{i}", "text": text}, ensure_ascii=False) + "\n")
    splits = (("train", query_docs[:train_queries]), ("dev", query_docs[train_queries : train_queries + dev_queries]),
              ("test", query_docs[train_queries + dev_queries :]))
    for split, docs in splits:
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for n, doc in enumerate(docs.tolist()):
                text = spans[doc]
                start, size = int(rng.integers(0, len(text) - 20)), int(rng.integers(12, 21))
                f.write(json.dumps({"query_id": f"{split}-{n}", "query": text[start : start + size],
                                    "positive_passages": [{"docid": f"doc-{doc}", "text": ""}],
                                    "negative_passages": []}, ensure_ascii=False) + "\n")
    return lengths


def passage_counts(lengths: np.ndarray) -> np.ndarray:
    """Passages per document as split_into_passages cuts them: the vocabulary makes each character one token."""
    window = PASSAGE_MAX_LEN - 2  # [CLS] and [SEP]
    stride = window - OVERLAP
    return np.where(lengths <= window, 1, 1 + np.ceil(np.maximum(lengths - window, 0) / stride)).astype(np.int64)


def check_passage_counts(dataset: Path, counts: np.ndarray, sample: int = 50) -> None:
    from transformers import AutoTokenizer

    from zh_retrieval.data.passages import split_into_passages

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as f:
        for row, line in zip(range(sample), f):
            cut = split_into_passages(tokenizer, json.loads(line)["text"], PASSAGE_MAX_LEN, OVERLAP)
            assert len(cut) == counts[row], f"document {row}: {len(cut)} passages, formula {counts[row]}"


def unit_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_embeddings(out_dir: Path, dataset: Path, counts: np.ndarray, seed: int = 1) -> None:
    """embed's output (fp16 passages, fp32 first-passage document vectors); queries near a positive's passage."""
    from zh_retrieval.data.embeddings import DOCIDS, ENCODING, PASSAGE_DOC, PASSAGE_DTYPE, PASSAGE_VECTORS, VECTORS

    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True)
    starts = np.concatenate([[0], np.cumsum(counts)])
    passages = np.lib.format.open_memmap(out_dir / PASSAGE_VECTORS, mode="w+", dtype=PASSAGE_DTYPE,
                                         shape=(int(starts[-1]), DIM))
    for begin in range(0, len(passages), 1 << 16):
        passages[begin : begin + (1 << 16)] = unit_rows(rng, min(1 << 16, len(passages) - begin))
    passages.flush()
    np.save(out_dir / PASSAGE_DOC, np.repeat(np.arange(len(counts)), counts))
    np.save(out_dir / VECTORS, np.asarray(passages[starts[:-1]], dtype=np.float32))
    (out_dir / DOCIDS).write_text("".join(f"doc-{i}\n" for i in range(len(counts))), encoding="utf-8")
    (out_dir / ENCODING).write_text(json.dumps({"precision": "fp32"}), encoding="utf-8")
    for split, noise in (("train", 1.0), ("dev", 1.0), ("test", 1.0), ("dev-base", 1.5), ("test-base", 1.5)):
        rows = [json.loads(line) for line in (dataset / f"{split.split('-')[0]}.jsonl").open(encoding="utf-8")]
        docs = np.array([int(r["positive_passages"][0]["docid"].split("-")[1]) for r in rows])
        picked = starts[docs] + rng.integers(0, counts[docs])
        queries = np.asarray(passages[picked], dtype=np.float32) + noise * unit_rows(rng, len(docs))
        np.save(out_dir / f"queries-{split}.npy", queries / np.linalg.norm(queries, axis=1, keepdims=True))
    del passages


def benchmark_params(out: Path, dataset: Path) -> Path:
    from ruamel.yaml import YAML

    yaml = YAML()
    params = yaml.load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["dataset"], params["base_model"] = str(dataset), str(TOKENIZER)
    params["embedding"]["passage_max_len"], params["long_documents"]["overlap"] = PASSAGE_MAX_LEN, OVERLAP
    with out.open("w", encoding="utf-8") as f:
        yaml.dump(params, f)
    return out


def run_child(args: list[str]) -> tuple[float, float]:
    """Run `python ARGS` in a child process: (wall seconds, peak RSS in GiB)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=dict(os.environ, HF_HUB_OFFLINE="1"))
    # stderr is read only at the end: stages log little (no progress bars without a terminal).
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 2**20


def stage_mine(work: Path, cut_dir: Path | None, name: str) -> None:
    """mine from the query vectors on, into work/NAME (the training rows) and work/metrics/NAME.json."""
    from zh_retrieval.core.params import load_params
    from zh_retrieval.data.mldr import load_corpus
    from zh_retrieval.data.prepared import read_train_queries
    from zh_retrieval.mining.miner import mine_with_vectors
    from zh_retrieval.mining.stats import check_corpus_size

    params = load_params(work / "params.yaml")
    queries = read_train_queries(work / "prepared" / "train_queries.jsonl")
    corpus = load_corpus(work / "dataset")
    check_corpus_size(corpus, queries, params.mine, params.path)
    stats = mine_with_vectors(TOKENIZER, work / "embeddings", corpus, queries,
                              np.load(work / "embeddings" / "queries-train.npy"), work / name, params, cut_dir)
    (work / "metrics" / f"{name}.json").write_text(json.dumps(stats, indent=1), encoding="utf-8")


def stage_document_search(work: Path) -> None:
    """mine's search with `mine.guard: truncated`: faiss over the document vectors, as deep as mine goes."""
    from zh_retrieval.core.params import load_params
    from zh_retrieval.data.embeddings import load_corpus_embeddings
    from zh_retrieval.retrieval.search import search

    params = load_params(work / "params.yaml").mine
    _, corpus_vectors = load_corpus_embeddings(work / "embeddings")
    depth = min(len(corpus_vectors), max(params.hard_rank_max, params.random_rank_min))
    search(corpus_vectors, np.load(work / "embeddings" / "queries-train.npy"), depth)


def stage_evaluate(work: Path, model: str) -> None:
    from zh_retrieval.core.params import load_params
    from zh_retrieval.data.embeddings import load_corpus_embeddings, load_passage_embeddings
    from zh_retrieval.data.prepared import load_eval_queries, load_evidence_groups
    from zh_retrieval.retrieval.evaluation import score_vectors

    docids, corpus_vectors = load_corpus_embeddings(work / "embeddings")
    passages = load_passage_embeddings(work / "embeddings")
    for split in ("dev", "test"):
        queries, qrels = load_eval_queries(work / "prepared" / split)
        vectors = np.load(work / "embeddings" / (f"queries-{split}-base.npy" if model == "base"
                                                  else f"queries-{split}.npy"))
        metrics = score_vectors(list(queries), vectors, docids, corpus_vectors, passages, qrels,
                                work / "eval" / model / split, load_params(work / "params.yaml").evaluate, model,
                                load_evidence_groups(work / "prepared" / split))
        metrics.update(query_precision="fp32", corpus_precision="fp32", query_instruction="")
        (work / "metrics" / split).mkdir(parents=True, exist_ok=True)
        (work / "metrics" / split / f"{model}.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")


def stage_generate(work: Path, documents: int, train_queries: int, test_queries: int) -> None:
    dataset = work / "dataset"
    counts = passage_counts(generate_dataset(dataset, documents, train_queries, test_queries))
    check_passage_counts(dataset, counts)
    write_embeddings(work / "embeddings", dataset, counts)
    benchmark_params(work / "params.yaml", dataset)
    (work / "metrics").mkdir()


def run_size(documents: int, work: Path, train_queries: int = TRAIN_QUERIES, test_queries: int = TEST_QUERIES,
             only: list[str] | None = None) -> list[tuple[str, float, float]]:
    """Generate a dataset of `documents` under `work` and run every stage (or those named in `only`, each given
    what it reads) on it: (stage, seconds, GiB)."""
    dataset, params = work / "dataset", work / "params.yaml"
    me = [str(Path(__file__).resolve())]
    # Generated in a child too: a child's peak RSS starts from its parent's (Linux carries the
    # high-water mark across exec), so this process must stay small.
    seconds, _ = run_child([*me, "--stage", "generate", str(work), str(documents), str(train_queries),
                            str(test_queries)])
    size = sum(p.stat().st_size for p in dataset.iterdir()) / 2**30
    passages = np.load(work / "embeddings" / "passage_doc.npy", mmap_mode="r").shape[0]
    print(f"\n{documents:,} documents ({size:.2f} GiB of JSONL), {passages:,} passages; generated in {seconds:.0f}s",
          flush=True)
    stages = [
        ("prepare", ["-m", "zh_retrieval.stages.prepare", str(dataset), str(work / "prepared"),
                     "--params", str(params)]),
        ("evaluate_bm25", ["-m", "zh_retrieval.stages.evaluate_bm25", str(dataset), str(work / "prepared"),
                           str(work / "eval" / "bm25"), str(work / "metrics"), "--params", str(params)]),
        ("cut", ["-m", "zh_retrieval.stages.cut", str(TOKENIZER), str(dataset), str(work / "passages"),
                 "--params", str(params)]),
        ("mine-cutting", [*me, "--stage", "mine-cutting", str(work)]),
        ("mine", [*me, "--stage", "mine", str(work)]),
        ("mine's search with guard: truncated", [*me, "--stage", "document-search", str(work)]),
        ("evaluate base (MaxP)", [*me, "--stage", "evaluate-base", str(work)]),
        ("evaluate fine-tuned (MaxP)", [*me, "--stage", "evaluate-finetuned", str(work)]),
        ("evaluate_hybrid", ["-m", "zh_retrieval.stages.evaluate_hybrid", str(work / "eval" / "bm25"),
                             str(work / "eval" / "finetuned"), str(work / "prepared"),
                             str(work / "eval" / "hybrid"), str(work / "metrics"), "--params", str(params)]),
        ("report", ["-m", "zh_retrieval.stages.report", str(work / "metrics"), str(work / "eval"),
                    str(work / "report.md"), str(work / "plots"), "--params", str(params)]),
    ]
    results = []
    for name, args in stages:
        if only is not None and name.split(" ")[0] not in only:
            continue
        seconds, gib = run_child(args)
        results.append((name, seconds, gib))
        print(f"  {name:<28} {seconds:8.1f} s {gib:8.2f} GiB", flush=True)
    if only is None:
        bm25 = json.loads((work / "metrics" / "test" / "bm25.json").read_text(encoding="utf-8"))
        mine = json.loads((work / "metrics" / "mined.json").read_text(encoding="utf-8"))
        print(f"  (BM25 nDCG@10 {bm25['ndcg_at_10']:.3f}; mine: {mine['queries_without_hard']} of "
              f"{train_queries:,} queries without a hard negative)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--keep", type=Path, help="generate into this directory and leave it there")
    parser.add_argument("--train-queries", type=int, default=TRAIN_QUERIES)
    parser.add_argument("--test-queries", type=int, default=TEST_QUERIES)
    parser.add_argument("--only", nargs="+", choices=[
        "prepare", "evaluate_bm25", "cut", "mine-cutting", "mine", "mine's", "evaluate", "evaluate_hybrid", "report"],
        help="run just these stages (first words of their names), in the table's order; each needs what it reads: "
             "mine-cutting and mine need prepare, mine needs cut, evaluate_hybrid needs evaluate_bm25 and evaluate")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)  # a child's job: STAGE WORK [DOCUMENTS]
    args = parser.parse_args()
    if args.stage:
        name, work = args.stage[0], Path(args.stage[1])
        if name == "generate":
            stage_generate(work, *(int(n) for n in args.stage[2:5]))
        elif name == "mine":
            stage_mine(work, work / "passages", "mined")
        elif name == "mine-cutting":
            stage_mine(work, None, "mined-cutting")
        elif name == "document-search":
            stage_document_search(work)
        else:
            stage_evaluate(work, name.split("-")[1])
        return
    print(f"{os.cpu_count()} CPUs; stages run one at a time, each in its own process")
    table = {}
    for documents in args.documents:
        if args.keep:
            work = args.keep / f"scale-{documents}"
            shutil.rmtree(work, ignore_errors=True)
            table[documents] = run_size(documents, work, args.train_queries, args.test_queries, args.only)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                table[documents] = run_size(documents, Path(tmp) / f"scale-{documents}", args.train_queries,
                                            args.test_queries, args.only)
    print("\n| stage | " + " | ".join(f"{n:,} documents: s / peak GiB" for n in table) + " |")
    print("|---|" + "---|" * len(table))
    for i, (name, _, _) in enumerate(next(iter(table.values()))):
        print(f"| {name} | " + " | ".join(f"{rows[i][1]:.0f} / {rows[i][2]:.2f}" for rows in table.values()) + " |")


if __name__ == "__main__":
    main()
