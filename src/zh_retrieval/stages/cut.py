"""cut: split every document into passages once, with their token ids, for every stage that reads the corpus.

    python -m zh_retrieval.stages.cut MODEL_DIR DATASET_DIR OUT_DIR --params params.yaml

MODEL_DIR's tokenizer cuts (the base model's; the fine-tuned and merged models keep it, and each
reader checks its own against the fingerprint in OUT_DIR/cut.json). Passages are
`embedding.passage_max_len` tokens with `long_documents.overlap` shared; data/cut.py says what
OUT_DIR holds.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import atomic_dir, check_model_dir
from zh_retrieval.core.params import load_params
from zh_retrieval.data.cut import cut_documents, save_cut
from zh_retrieval.data.mldr import iter_corpus

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="the model whose tokenizer cuts (the base model)")
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    check_model_dir(args.model_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, trust_remote_code=False)
    started = time.perf_counter()
    cut = cut_documents(tokenizer, list(iter_corpus(args.dataset_dir)), params.embedding.passage_max_len,
                        params.long_documents.overlap)
    with atomic_dir(args.out_dir, needed_bytes=cut.ids.nbytes + cut.spans.nbytes * 2 + 2**20) as tmp:
        save_cut(cut, tmp)
    logger.info("cut %s documents into %s passages (%s token ids, %s) in %.1fs -> %s", f"{len(cut.docids):,}",
                f"{cut.info['passages']:,}", f"{len(cut.ids):,}", cut.info["dtype"], time.perf_counter() - started,
                args.out_dir)


if __name__ == "__main__":
    run_stage(main)
