"""check_params: the pipeline's first stage; every param and the directories they name, before any stage runs.

    python -m zh_retrieval.check params.yaml output/checked_params.txt

DVC deletes a stage's outputs just before running its command, so a stage that only then finds
`lr: abc` (or a `dataset` directory that is not there) has already lost the previous results.
Every other stage depends on this one's output, so DVC runs it first: on a bad value it stops
here with one line naming the key, and nothing downstream is touched. It reads every section the
way the stages will, and checks that `dataset` has the files an MLDR-layout directory needs (and
`general.dataset` its corpus and test split), and that `base_model` is a saved model; a
dataset's *contents* are checked by prepare (and, before a run, by
`python -m zh_retrieval.prepare --check DIR`).

The output is the same few bytes whenever the params are valid, so a change of params re-runs
only this stage and the ones that read the changed keys.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_file, check_model_dir
from zh_retrieval.mldr import dataset_file
from zh_retrieval.params import (
    bm25_params,
    embedding_params,
    encode_params,
    evaluate_params,
    finetune_params,
    general_params,
    hybrid_params,
    load_params,
    long_document_params,
    merge_params,
    mine_params,
    prepare_params,
)

logger = logging.getLogger(__name__)

CHECKED = "params valid\n"  # the stage's whole output: constant, so it never re-runs what depends on it


def check_params(params_file: Path) -> None:
    """Raise InputError, naming the file and key, on the first bad value or missing input."""
    for section in (embedding_params, long_document_params, mine_params, finetune_params, encode_params,
                    evaluate_params, bm25_params, hybrid_params, merge_params):
        section(params_file)
    general_dataset = Path(general_params(params_file).dataset)
    eval_split = prepare_params(params_file).eval_split
    params = load_params(params_file)
    for key in ("dataset", "base_model"):
        if not isinstance(params.get(key), str) or not params[key]:
            raise InputError(params_file, f"`{key}` is {params.get(key)!r}; expected a directory path")
    splits = ("corpus", "train", eval_split)
    checks = {"dataset": lambda: [dataset_file(Path(params["dataset"]), name) for name in splits],
              "base_model": lambda: check_model_dir(Path(params["base_model"])),
              "general.dataset": lambda: [dataset_file(general_dataset, name) for name in ("corpus", "test")]}
    for key, check in checks.items():
        try:
            check()
        except InputError as error:
            raise InputError(params_file, f"`{key}`: {error}") from None


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
