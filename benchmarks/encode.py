"""Encoding speed of this project's encoder against FlagEmbedding's FlagModel and sentence-transformers.

    python benchmarks/encode.py                      # the bundled tiny model
    python benchmarks/encode.py --size base          # a random BERT-base-sized model (12 x 768), same vocabulary

All three encode the same texts (the sample's longest documents) with the same model, pooling,
batch size and max length, interleaved over --repeats rounds; the median texts/s of each is
reported. Ours runs with `encode.precision: auto` (bf16 autocast on a CPU with AVX512-BF16 or AMX) and fp32;
the others with their CPU defaults (fp32). Ranking quality is checked in the same run: nDCG@10 of
the tiny model on the sample's test queries, fp32 against auto precision. Peak RSS is the
process's high-water mark. The last lines are the ratios, e.g. `ratio_vs_flagmodel=1.8`.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from zh_retrieval.core.params import EmbeddingParams, EncodeParams, PrepareParams  # noqa: E402
from zh_retrieval.data.mldr import load_corpus  # noqa: E402
from zh_retrieval.data.preparation import prepare  # noqa: E402
from zh_retrieval.data.prepared import load_eval_queries  # noqa: E402
from zh_retrieval.retrieval.embedding import embed_corpus  # noqa: E402
from zh_retrieval.retrieval.encode import cpu_has_native_bf16, encode, load_embedder, with_instruction  # noqa: E402
from zh_retrieval.retrieval.metrics import mean_metrics, per_query_metrics  # noqa: E402
from zh_retrieval.retrieval.search import search  # noqa: E402

TINY = ROOT / "models" / "tiny-bert-zh"
SAMPLE = ROOT / "data" / "sample"
INSTRUCTION = "为这个句子生成表示以用于检索相关文章："


def base_sized_model(out_dir: Path) -> Path:
    """A random BERT-base-sized model (12 layers, hidden 768) with the tiny model's vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(TINY)
    config = BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def encoders(model_dir: Path, pooling: str, max_length: int, batch_size: int
             ) -> dict[str, Callable[[list[str]], np.ndarray]]:
    from FlagEmbedding import FlagModel
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    ours_auto = load_embedder(model_dir, pooling, "auto", torch.device("cpu"))
    ours_fp32 = load_embedder(model_dir, pooling, "fp32", torch.device("cpu"))
    flag = FlagModel(str(model_dir), pooling_method=pooling, use_fp16=False, devices="cpu", batch_size=batch_size,
                     passage_max_length=max_length)
    transformer = Transformer(str(model_dir), max_seq_length=max_length)
    st = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling),
                                      Normalize()], device="cpu")
    return {
        f"ours (auto: {ours_auto.precision})": lambda texts: encode(ours_auto, texts, max_length, batch_size),
        "ours (fp32)": lambda texts: encode(ours_fp32, texts, max_length, batch_size),
        "flagmodel (fp32)": lambda texts: flag.encode_corpus(texts, batch_size=batch_size, max_length=max_length,
                                                             convert_to_numpy=True),
        "sentence_transformers (fp32)": lambda texts: st.encode(texts, batch_size=batch_size, show_progress_bar=False),
    }


def throughput(candidates: dict[str, Callable[[list[str]], np.ndarray]], texts: list[str], repeats: int
               ) -> dict[str, float]:
    """Median texts/s of each candidate; rounds interleave the candidates so drift hits all alike."""
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    for name, run in candidates.items():  # warm-up: first-call costs (allocations, kernels) are not throughput
        run(texts[:4])
    for _ in range(repeats):
        for name, run in candidates.items():
            started = time.perf_counter()
            run(texts)
            timings[name].append(len(texts) / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in timings.items()}


def sample_ndcg(precision: str, max_length: int) -> float:
    """nDCG@10 of the tiny model on the sample's test queries, encoding documents at `precision`, truncated
    at `max_length` tokens."""
    model = ROOT / "output" / "finetuned" if (ROOT / "output" / "finetuned" / "config.json").is_file() else TINY
    embedding = EmbeddingParams(pooling="mean", query_instruction=INSTRUCTION, query_max_len=64,
                                passage_max_len=max_length)
    with tempfile.TemporaryDirectory() as tmp:
        # The sample records where each query's evidence lies, which takes the model's tokenizer to place.
        prepare(SAMPLE, Path(tmp) / "prepared", PrepareParams(dev_from_train=200, dev_seed=0), model,
                embedding.passage_max_len)
        queries, qrels = load_eval_queries(Path(tmp) / "prepared" / "test")
        corpus = load_corpus(SAMPLE)
        vectors = embed_corpus(model, corpus.items(), Path(tmp) / "emb", embedding, EncodeParams(32, precision))
    embedder = load_embedder(model, "mean", precision, torch.device("cpu"))
    query_ids, docids = list(queries), list(corpus)
    query_vectors = encode(embedder, with_instruction([queries[q] for q in query_ids], INSTRUCTION), 64)
    scores, rows = search(vectors, query_vectors, 10)
    run = {q: {docids[i]: float(s) for s, i in zip(scores[n], rows[n])} for n, q in enumerate(query_ids)}
    return mean_metrics(per_query_metrics(qrels, run, (10,)))["ndcg_at_10"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    corpus = load_corpus(SAMPLE)
    texts = sorted(corpus.values(), key=len, reverse=True)[: args.texts]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = TINY if args.size == "tiny" else base_sized_model(Path(tmp) / "base")
        candidates = encoders(model_dir, "mean", args.max_length, args.batch_size)
        outputs = {name: run(texts[:8]) for name, run in candidates.items()}
        rates = throughput(candidates, texts, args.repeats)

    reference = outputs["ours (fp32)"]
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    print(f"model: {args.size}, {len(texts)} texts at {args.max_length} tokens, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}; CPU native bf16 {cpu_has_native_bf16()} "
          f"(AMX {amx})")
    print(f"{'encoder':<32} {'texts/s':>9}  mean cosine to ours (fp32)")
    for name, rate in rates.items():
        cosine = float(np.mean(np.sum(outputs[name] * reference, axis=1)))
        print(f"{name:<32} {rate:9.2f}  {cosine:.6f}")
    ndcg_fp32, ndcg_auto = sample_ndcg("fp32", args.max_length), sample_ndcg("auto", args.max_length)
    print(f"sample nDCG@10 (tiny model): fp32 {ndcg_fp32:.4f}, auto {ndcg_auto:.4f}, "
          f"difference {ndcg_auto - ndcg_fp32:+.4f}")
    print(f"peak_rss_mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    ours = next(iter(rates.values()))  # the project's default: encode.precision auto
    print(f"ratio_vs_flagmodel={ours / rates['flagmodel (fp32)']:.2f}")
    print(f"ratio_vs_sentence_transformers={ours / rates['sentence_transformers (fp32)']:.2f}")


if __name__ == "__main__":
    main()
