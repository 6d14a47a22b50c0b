"""Fine-tuning a cross-encoder with FlagEmbedding's encoder-only reranker runner, on reranker_groups' rows.

By default the reranker learns from the very rows the embedder trains on (mine's: a query, its
positive passage, its mined negatives; `reranker.negatives: bm25` draws the negatives from BM25's
top instead, training/reranker_groups.py): each query's group of `reranker.train_group_size`
pairs is scored, and the loss is cross-entropy with the positive as the target (FlagEmbedding's
`CrossEncoderModel`). The output directory appears only when training has finished, and holds:

    model.safetensors, config.json, tokenizer files   load with FlagReranker or
                                                       AutoModelForSequenceClassification
    training_args.json                                 what the trainer ran with (learning_rate, ...)
    trainer_state.json                                 loss and learning rate per logging step

One process (a CPU or one GPU); a killed run starts over.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import atomic_dir
from zh_retrieval.core.params import RerankerParams
from zh_retrieval.training.finetune import check_train_file, fp32_weight_bytes, reproducible_state

logger = logging.getLogger(__name__)


def reranker_arguments(base_model: Path, train_file: Path, output_dir: Path, params: RerankerParams) -> tuple:
    """FlagEmbedding's three reranker argument dataclasses, filled from params.yaml's `reranker` section."""
    from FlagEmbedding.abc.finetune.reranker import (  # what FlagEmbedding's own reranker __main__ parses
        AbsRerankerDataArguments,
        AbsRerankerModelArguments,
        AbsRerankerTrainingArguments,
    )

    model_args = AbsRerankerModelArguments(model_name_or_path=str(base_model), trust_remote_code=False)
    data_args = AbsRerankerDataArguments(
        train_data=[str(train_file)],
        train_group_size=params.train_group_size,
        query_max_len=params.query_max_len,
        # FlagEmbedding reads query_max_len + passage_max_len as the pair's length: max_length in all.
        passage_max_len=params.passage_max_len,
    )
    training_args = AbsRerankerTrainingArguments(
        output_dir=str(output_dir),
        learning_rate=params.lr,
        num_train_epochs=params.epochs,
        per_device_train_batch_size=params.batch_size,
        # The model reshapes its logits to (batch_size, group): a short last batch would not fit.
        dataloader_drop_last=True,
        warmup_ratio=params.warmup_ratio,
        weight_decay=params.weight_decay,
        fp16=params.precision == "fp16",
        bf16=params.precision == "bf16",
        logging_steps=params.logging_steps,
        logging_dir=str(output_dir / "logs"),
        save_strategy="no",
        report_to="none",  # never "all": the Trainer would find dvclive and rewrite dvc.yaml
        seed=params.seed,
        data_seed=params.seed,
        disable_tqdm=False,
    )
    return model_args, data_args, training_args


def recorded_arguments(arguments: Any, written_in: Path, out_dir: Path) -> str:
    """The trainer's arguments as JSON, naming the output directory instead of its temporary.

    The temporary's name carries the host and pid: recorded as they are, the same run would give
    other bytes on every machine and defeat DVC's run-cache.
    """
    data = json.loads(arguments.to_json_string())
    for key, value in data.items():
        if isinstance(value, str) and value.startswith(str(written_in)):
            data[key] = str(out_dir) + value[len(str(written_in)):]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def train_reranker(base_model: Path, train_file: Path, out_dir: Path, params: RerankerParams) -> None:
    from FlagEmbedding.finetune.reranker.encoder_only.base import EncoderOnlyRerankerRunner

    queries = check_train_file(train_file, params.train_group_size)
    if queries < params.batch_size:
        raise InputError(train_file, f"{queries} training queries, fewer than one batch of reranker.batch_size "
                         f"{params.batch_size}", fix="lower reranker.batch_size")
    logging.getLogger("FlagEmbedding.abc.finetune.reranker.AbsRunner").setLevel(logging.ERROR)
    logger.info("fine-tuning the reranker %s: lr %s, epochs %g, batch %d, groups of %d, %d tokens a pair "
                "(query %d), %s, seed %d", base_model, params.lr, params.epochs, params.batch_size,
                params.train_group_size, params.max_length, params.query_max_len, params.precision, params.seed)
    # The weights (fp32 as trained) and the tokenizer and config beside them.
    needed = fp32_weight_bytes(base_model) + sum(p.stat().st_size for p in base_model.iterdir()
                                                 if p.is_file() and p.suffix != ".safetensors")
    with atomic_dir(out_dir, needed_bytes=needed) as tmp:
        model_args, data_args, training_args = reranker_arguments(base_model, train_file, tmp, params)
        runner = EncoderOnlyRerankerRunner(model_args=model_args, data_args=data_args, training_args=training_args)
        runner.run()
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; training_args.json says the same safely
        (tmp / "training_args.json").write_text(recorded_arguments(runner.trainer.args, tmp, out_dir),
                                                encoding="utf-8")
        (tmp / "trainer_state.json").write_text(reproducible_state(runner.trainer.state), encoding="utf-8")
    logger.info("wrote %s (%d training queries, %d steps)", out_dir, queries, runner.trainer.state.global_step)
