"""embed: encode a dataset's whole corpus with one model, once, for every stage that searches it.

    python -m zh_retrieval.stages.embed MODEL_DIR DATASET_DIR OUT_DIR --params params.yaml

OUT_DIR gets the document vectors and, with `long_documents.maxp`, the passage vectors, in the
format data/embeddings.py describes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.params import load_params
from zh_retrieval.data.mldr import iter_corpus
from zh_retrieval.retrieval.embedding import embed_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("dataset_dir", type=Path, help="the MLDR-layout directory whose corpus is encoded")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    embed_corpus(args.model_dir, iter_corpus(args.dataset_dir), args.out_dir, params.embedding, params.encode,
                 params.long_documents)


if __name__ == "__main__":
    run_stage(main)
