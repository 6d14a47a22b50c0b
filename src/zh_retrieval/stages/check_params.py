"""check_params: the pipeline's first stage; every param and the directories they name, before any stage runs.

    python -m zh_retrieval.stages.check_params params.yaml output/checked_params.txt

DVC deletes a stage's outputs just before running its command, so a stage that only then finds
`lr: abc` (or a `dataset` directory that is not there) has already lost the previous results.
Every other stage depends on this one's output, so DVC runs it first: on a bad value it stops
here with one line naming the key, and nothing downstream is touched. It parses every section
the way the stages will, and checks that `dataset` has the files an MLDR-layout directory needs
(and `general.dataset` its corpus and test split), that `base_model` is a saved model and
`reranker.base_model` a cross-encoder (one-logit head, tokenizer); a
dataset's *contents* are checked by prepare (and, before a run, by
`python -m zh_retrieval.stages.prepare --check DIR`).

The output is the same few bytes whenever the params are valid, so a change of params re-runs
only this stage and the ones that read the changed keys.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_file, check_cross_encoder_dir, check_model_dir
from zh_retrieval.core.params import EVAL_SPLITS, Params, load_params
from zh_retrieval.data.mldr import dataset_file

logger = logging.getLogger(__name__)

CHECKED = "params valid\n"  # the stage's whole output: constant, so it never re-runs what depends on it


def check_inputs(params: Params) -> None:
    """Raise InputError, naming the params file and key, when a directory the params name is missing or wrong."""
    # dev.jsonl is optional in the dataset (prepare draws dev from train without it), not in the general set.
    checks = {"dataset": lambda: [dataset_file(Path(params.dataset), name) for name in ("corpus", "train", "test")],
              "base_model": lambda: check_model_dir(Path(params.base_model)),
              "reranker.base_model": lambda: check_cross_encoder_dir(Path(params.reranker.base_model)),
              "general.dataset": lambda: [dataset_file(Path(params.general.dataset), name)
                                          for name in ("corpus", *EVAL_SPLITS)]}
    for key, check in checks.items():
        try:
            check()
        except InputError as error:
            raise InputError(params.path, f"`{key}`: {error}") from None


def check_params(params_file: Path) -> None:
    """Raise InputError, naming the file and key, on the first bad value or missing input."""
    check_inputs(load_params(params_file))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", type=Path)
    parser.add_argument("out", type=Path, help="written only when every check passes")
    args = parser.parse_args()
    check_params(args.params)
    with atomic_file(args.out) as tmp:
        tmp.write_text(CHECKED, encoding="utf-8")
    logger.info("%s: every param valid; dataset and base model found", args.params)


if __name__ == "__main__":
    run_stage(main)
