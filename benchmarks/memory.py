"""Peak memory of the embed and evaluate stages, on the sample and as the corpus grows.

    python benchmarks/memory.py                       # sample, then synthetic corpora of 2k, 8k, 32k documents
    python benchmarks/memory.py --sizes 2000 200000   # pick the sizes

Each stage runs as DVC runs it (`python -m zh_retrieval.stages.<stage>`) in its own process; its
peak resident memory (ru_maxrss) is read from the OS. `embed` runs twice: as it is, and with
`retrieval.embedding.release_freed_memory` (the malloc_trim after each chunk of documents)
switched off, to show what the trim saves as the corpus grows. Synthetic documents are random strings of the
sample's characters with the sample's length distribution, so tokenization and truncation cost
what real text costs. The tiny model keeps this quick; the embeddings of a 768-wide model are 6x
larger (200,000 x 768 x 4 bytes = 586 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from zh_retrieval.preset import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
TINY = ROOT / "models" / "tiny-bert-zh"


def synthetic_dataset(out_dir: Path, documents: int, seed: int = 0) -> Path:
    """An MLDR-layout dataset: `documents` random documents, the sample's test queries pointing at the first ones."""
    rng = random.Random(seed)
    sample_docs = [json.loads(line)["text"] for line in (SAMPLE / "corpus.jsonl").open(encoding="utf-8")]
    alphabet = sorted(set("".join(sample_docs)) - {"\n"})
    lengths = [len(t) for t in sample_docs]
    out_dir.mkdir(parents=True)
    with (out_dir / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for i in range(documents):
            text = "".join(rng.choices(alphabet, k=min(rng.choice(lengths), 20_000)))
            f.write(json.dumps({"docid": f"doc-{i}", "text": text}, ensure_ascii=False) + "\n")
    for offset, (split, count) in enumerate((("train", 20), ("dev", 5), ("test", 100))):
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for i in range(count):
                docid = f"doc-{(i * 3 + offset) % documents}"
                f.write(json.dumps({"query_id": f"{split}-{i}", "query": "".join(rng.choices(alphabet, k=8)),
                                    "positive_passages": [{"docid": docid, "text": ""}], "negative_passages": []},
                                   ensure_ascii=False) + "\n")
    return out_dir


# The embed stage with the trim after each chunk replaced by nothing.
EMBED_WITHOUT_TRIM = ("import sys, zh_retrieval.retrieval.embedding as embedding, zh_retrieval.stages.embed as stage; "
                      "embedding.release_freed_memory = lambda: None; sys.argv[0] = 'embed'; stage.main()")


def peak_rss_mib(args: list[str]) -> float:
    """Run `python -m <args>` (or `python -c ...`) as a child process; its peak RSS, as the kernel counted it."""
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", *args]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=dict(os.environ, HF_HUB_OFFLINE="1"))
    _, status, usage = os.wait4(child.pid, 0)
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(stderr[-2000:])
    return usage.ru_maxrss / 1024


def measure(dataset: Path, work: Path, params: Path) -> dict[str, float]:
    prepared, embeddings = work / "prepared", work / "embeddings"
    subprocess.run([sys.executable, "-m", "zh_retrieval.stages.prepare", str(dataset), str(prepared),
                    "--params", str(params), "--tokenizer", str(TINY)],
                   check=True, capture_output=True)
    embed_args = [str(TINY), str(dataset), str(embeddings), "--params", str(params)]
    untrimmed = peak_rss_mib(["-c", EMBED_WITHOUT_TRIM, *embed_args])
    embed = peak_rss_mib(["zh_retrieval.stages.embed", *embed_args])
    evaluate = peak_rss_mib(["zh_retrieval.stages.evaluate", str(TINY), str(embeddings), str(prepared),
                             str(work / "eval"), str(work / "metrics.json"), "--params", str(params)])
    files = sum(p.stat().st_size for p in embeddings.iterdir()) / 2**20
    return {"embed": embed, "untrimmed": untrimmed, "evaluate": evaluate, "embeddings": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--maxp", action="store_true", help="also embed passages (long_documents.maxp)")
    parser.add_argument("--no-sample", action="store_true", help="only the synthetic corpora")
    args = parser.parse_args()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "params.yaml"
        # Without MaxP, mining's passage choices must be the truncated document for the params to be valid.
        passage_choices = {} if args.maxp else {f"mine.{key}": "truncated" for key in ("positive", "guard",
                                                                                        "negative_text")}
        apply_overrides(ROOT / "params.yaml", params, {"long_documents.maxp": args.maxp, **passage_choices})
        print(f"peak RSS in MiB (tiny model, maxp {args.maxp}; this script itself {baseline:.0f})")
        print(f"{'documents':>10} {'embed':>8} {'embed without trim':>19} {'evaluate':>9} {'embeddings on disk':>19}")
        rows = [] if args.no_sample else [("sample", SAMPLE)]
        rows += [(str(n), None) for n in args.sizes]
        for label, dataset in rows:
            work = Path(tmp) / f"work-{label}"
            work.mkdir()
            dataset = dataset or synthetic_dataset(work / "dataset", int(label))
            result = measure(dataset, work, params)
            print(f"{label:>10} {result['embed']:8.0f} {result['untrimmed']:19.0f} {result['evaluate']:9.0f} "
                  f"{result['embeddings']:19.1f}")
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
