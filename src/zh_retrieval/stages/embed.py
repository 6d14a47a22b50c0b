"""embed: encode a dataset's whole corpus with one model, once, for every stage that searches it.

    python -m zh_retrieval.stages.embed MODEL_DIR PASSAGES_DIR OUT_DIR --params params.yaml

PASSAGES_DIR is the cut stage's output (every document cut into passages and tokenized once, for
every model: data/cut.py); the model must have the tokenizer it was cut with. A dataset directory
works too: its corpus is then cut here, the same way. OUT_DIR gets the document vectors and, with
`long_documents.maxp`, the passage vectors, in the format data/embeddings.py describes.

On a machine with several GPUs the command re-launches itself under torchrun, one process per
visible GPU (NNODES/NODE_RANK/MASTER_ADDR/MASTER_PORT in the environment span machines, as for
finetune): each rank encodes its share of every chunk and rank 0 writes OUT_DIR
(retrieval/distributed.py). Launched by torchrun directly, it does the same on CPUs.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.params import load_params
from zh_retrieval.data.cut import is_cut, load_cut
from zh_retrieval.data.mldr import iter_corpus
from zh_retrieval.retrieval.distributed import launched_by_torchrun, start, torchrun_arguments
from zh_retrieval.retrieval.embedding import embed_corpus
from zh_retrieval.retrieval.encode import visible_devices

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("passages_dir", type=Path, help="the cut stage's output, or an MLDR-layout dataset directory")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    gpus = [device for device in visible_devices() if device != "cpu"]
    nodes = int(os.environ.get("NNODES", "1"))
    if not launched_by_torchrun() and (len(gpus) > 1 or nodes > 1):
        command = [sys.executable, "-m", "torch.distributed.run", *torchrun_arguments(max(len(gpus), 1)),
                   "-m", "zh_retrieval.stages.embed", *sys.argv[1:]]
        logger.info("launching %s", " ".join(command))
        sys.exit(subprocess.run(command, check=False).returncode)
    group = start() if launched_by_torchrun() else None
    corpus = (load_cut(args.passages_dir, params.embedding.passage_max_len, params.long_documents.overlap)
              if is_cut(args.passages_dir) else iter_corpus(args.passages_dir))
    embed_corpus(args.model_dir, corpus, args.out_dir, params.embedding, params.encode, params.long_documents,
                 group=group)


if __name__ == "__main__":
    run_stage(main)
