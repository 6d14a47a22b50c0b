"""Fine-tuning with FlagEmbedding's encoder-only runner, resumable, published only when finished.

The output directory appears only when training has finished, and holds:
    model.safetensors, config.json, tokenizer files   load with FlagModel or AutoModel
    modules.json, 1_Pooling/, 2_Normalize/, ...        `SentenceTransformer(OUT_DIR)` with the trained pooling
    training_args.json, data_args.json                 what the trainer actually ran with (learning_rate, ...)
    trainer_state.json                                 loss and learning rate per logging step

`finetune.batch_size` is the global batch: each of the world's processes takes batch_size / world
size queries a step, so 1, 2 or 8 GPUs train the same number of steps on the same schedule (an
indivisible batch is an error).

With `finetune.checkpoint_every`, a killed run leaves its checkpoints in a hidden sibling of the
output directory, and the next run of the same model, data, params and world size resumes from the
last one; otherwise the next run starts clean, saying why. The output directory never holds a
half-trained model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from zh_retrieval.core.errors import InputError, OutOfSpace, is_out_of_space
from zh_retrieval.core.files import atomic_dir, free_space, read_jsonl, revision, tree_size
from zh_retrieval.core.params import EmbeddingParams, FinetuneParams
from zh_retrieval.retrieval.encode import visible_devices

logger = logging.getLogger(__name__)


def partial_dir(out_dir: Path) -> Path:
    """Where training writes until it succeeds; one fixed name so every torchrun rank agrees on it."""
    return out_dir.parent / f".{out_dir.name}.partial"


def fingerprint_file(out_dir: Path) -> Path:
    """Beside the partial directory: what the checkpoints in it were trained from."""
    return out_dir.parent / f".{out_dir.name}.partial.json"


def world_size_from_environment() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def per_device_batch_size(batch_size: int, world_size: int, params_file: Path | str = "params.yaml") -> int:
    """Each process's share of the global batch; the same steps and schedule on any number of processes."""
    if batch_size % world_size:
        raise InputError(params_file, f"`finetune.batch_size` {batch_size} does not divide among {world_size} "
                         "training processes", fix=f"use a multiple of {world_size}, or set finetune.nproc_per_node")
    return batch_size // world_size


def steps_per_epoch(train_queries: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: the last, short batch is kept (accelerate pads it across processes)."""
    return math.ceil(train_queries / batch_size)


def checkpoint_interval(train_queries: int, params: FinetuneParams) -> int | None:
    """`checkpoint_every`, a fraction of an epoch, in optimizer steps (at least 1); None without checkpoints."""
    if params.checkpoint_every is None:
        return None
    return max(1, math.ceil(steps_per_epoch(train_queries, params.batch_size) * params.checkpoint_every))


@dataclass(frozen=True)
class Fingerprint:
    """What an interrupted run's checkpoints were trained from: they resume only on an equal one."""

    recipe: str  # model, data, embedding and finetune params
    world_size: int  # the Trainer restores the checkpoint's per-device batch and re-counts epochs by it

    def describe(self) -> str:
        return json.dumps({"recipe": self.recipe, "world_size": self.world_size}, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> Fingerprint | None:
        try:
            data = json.loads(text)
            return cls(str(data["recipe"]), int(data["world_size"]))
        except (ValueError, KeyError, TypeError):
            return None  # written by an older version, or half-written: not resumable


def training_fingerprint(base_model: Path, train_file: Path, embedding: EmbeddingParams, params: FinetuneParams,
                         world_size: int) -> Fingerprint:
    """A run may only resume checkpoints of the same model, data, hyperparameters and number of processes."""
    described = {
        "base_model": revision(base_model),
        "train_file": hashlib.sha256(train_file.read_bytes()).hexdigest(),
        "embedding": dataclasses.asdict(embedding),
        "finetune": {k: v for k, v in dataclasses.asdict(params).items() if k != "nproc_per_node"},
    }
    return Fingerprint(hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest(), world_size)


def latest_checkpoint(directory: Path) -> Path | None:
    checkpoints = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[1]), default=None)


def why_not_resumable(recorded: Fingerprint | None, fingerprint: Fingerprint) -> str | None:
    """None when checkpoints recorded as `recorded` resume this run; else the reason, for the log."""
    if recorded is None:
        return "nothing readable records what its checkpoints were trained from"
    if recorded.recipe != fingerprint.recipe:
        return "its checkpoints are of another model, data or params"
    if recorded.world_size != fingerprint.world_size:
        # The Trainer would restore the old per-device batch and re-count finished epochs with the
        # new world size: a short run published as finished, or queries trained twice.
        written_by = f"{recorded.world_size} training process{'es' if recorded.world_size > 1 else ''}"
        return (f"its checkpoints were written by {written_by} and this run has {fingerprint.world_size}; "
                "a run resumes only on as many processes as it started with")
    return None


def prepare_partial_dir(out_dir: Path, fingerprint: Fingerprint, resume: bool) -> Path | None:
    """Keep an interrupted run's checkpoints if resuming is on and they match this run; else start clean.

    Returns the checkpoint to resume from, if any.
    """
    tmp, recorded_file = partial_dir(out_dir), fingerprint_file(out_dir)
    checkpoint = latest_checkpoint(tmp) if tmp.is_dir() else None
    recorded = Fingerprint.parse(recorded_file.read_text(encoding="utf-8")) if recorded_file.is_file() else None
    reason = "resuming is off" if not resume else why_not_resumable(recorded, fingerprint)
    if checkpoint is not None and reason is None:
        logger.info("resuming from %s", checkpoint)
        return checkpoint
    if tmp.exists():
        logger.warning("starting over: removing %s, left by an interrupted run, as %s", tmp,
                       reason or "it holds no complete checkpoint")
        shutil.rmtree(tmp)
    if resume:
        recorded_file.write_text(fingerprint.describe() + "\n", encoding="utf-8")
    else:
        recorded_file.unlink(missing_ok=True)
    return None


def count_train_queries(train_file: Path) -> int:
    """The rows of a train file check_train_file has passed (every rank counts them for the checkpoint interval)."""
    with train_file.open("rb") as f:
        return sum(1 for line in f if line.strip())


def check_train_file(train_file: Path, group_size: int, distill: bool = False) -> int:
    """Count the training queries, failing on a row FlagEmbedding would choke on later (with `distill`, one
    without a teacher score for each text)."""
    count = 0
    for line, row in read_jsonl(train_file):
        for field in ("query", "pos", "neg"):
            if field not in row:
                raise InputError(train_file, f"missing field `{field}`", line=line)
        if not row["pos"] or not row["neg"]:
            raise InputError(train_file, "`pos` and `neg` must each hold at least one text", line=line,
                             fix="FlagEmbedding divides by the number of negatives")
        if distill:
            check_teacher_scores(row, train_file, line)
        count += 1
    if count == 0:
        raise InputError(train_file, "no training examples")
    logger.info("%s: %d training queries, groups of %d (1 positive + %d negatives)", train_file, count, group_size,
                group_size - 1)
    return count


def check_teacher_scores(row: dict, train_file: Path, line: int) -> None:
    for texts, scores in (("pos", "pos_scores"), ("neg", "neg_scores")):
        values = row.get(scores)
        if (not isinstance(values, list) or len(values) != len(row[texts])
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)):
            raise InputError(train_file, f"`{scores}` must hold one number for each text of `{texts}` "
                             "(finetune.distill is on)", line=line,
                             fix="train on the teacher stage's output, or set finetune.distill: false")


def flag_arguments(base_model: Path, train_file: Path, output_dir: Path, embedding: EmbeddingParams,
                   params: FinetuneParams, world_size: int, train_queries: int) -> tuple:
    """FlagEmbedding's three argument dataclasses, filled from params.yaml."""
    save_steps = checkpoint_interval(train_queries, params)
    on_gpu = visible_devices() != ["cpu"]
    from FlagEmbedding.finetune.embedder.encoder_only.base import (
        EncoderOnlyEmbedderDataArguments,
        EncoderOnlyEmbedderModelArguments,
        EncoderOnlyEmbedderTrainingArguments,
    )

    model_args = EncoderOnlyEmbedderModelArguments(model_name_or_path=str(base_model), token=None,
                                                   trust_remote_code=False)  # its default too; never a model's code
    data_args = EncoderOnlyEmbedderDataArguments(
        train_data=[str(train_file)],
        train_group_size=params.train_group_size,
        query_max_len=embedding.query_max_len,
        passage_max_len=embedding.passage_max_len,
        query_instruction_for_retrieval=embedding.query_instruction or None,
        query_instruction_format="{}{}",  # the same as encode.with_instruction
        # The teacher's softmax over each group beside the contrastive loss (kd_loss_type kl_div, the default).
        knowledge_distillation=params.distill,
    )
    training_args = EncoderOnlyEmbedderTrainingArguments(
        output_dir=str(output_dir),
        learning_rate=params.lr,
        num_train_epochs=params.epochs,
        per_device_train_batch_size=per_device_batch_size(params.batch_size, world_size),
        warmup_ratio=params.warmup_ratio,
        weight_decay=params.weight_decay,
        temperature=params.temperature,
        sentence_pooling_method=embedding.pooling,
        normalize_embeddings=True,
        negatives_cross_device=world_size > 1,
        # Without a GPU, several processes only form a group if the Trainer is told: CPU, gloo.
        use_cpu=world_size > 1 and not on_gpu,
        ddp_backend="gloo" if world_size > 1 and not on_gpu else None,
        fp16=params.precision == "fp16",
        bf16=params.precision == "bf16",
        gradient_checkpointing=params.gradient_checkpointing,
        # FlagEmbedding runs the encoder twice a step (queries, passages); under DDP, transformers'
        # default reentrant checkpointing then dies with "Expected to mark a variable ready only
        # once" (FlagEmbedding issue #1155). The non-reentrant variant trains.
        gradient_checkpointing_kwargs={"use_reentrant": False} if params.gradient_checkpointing else None,
        deepspeed=params.deepspeed,
        logging_steps=params.logging_steps,
        # The default carries a timestamp and the host name into training_args.json, which would
        # make every run's model directory differ and defeat DVC's run-cache.
        logging_dir=str(output_dir / "logs"),
        # The finished model is the output; checkpoints exist only to resume an interrupted run.
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=2,  # the last one may be half-written when the process is killed
        # Never "all": the Trainer would find dvclive and rewrite the project's dvc.yaml.
        report_to="none",
        seed=params.seed,
        data_seed=params.seed,
        disable_tqdm=False,
    )
    return model_args, data_args, training_args


def write_sentence_transformers_config(model_dir: Path, embedding: EmbeddingParams) -> None:
    """Make `SentenceTransformer(model_dir)` pool and normalise as the model was trained.

    Without modules.json, sentence-transformers silently falls back to mean pooling, which is
    wrong for a CLS-trained bge model. The query instruction is saved as the "query" prompt.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(str(model_dir), max_seq_length=embedding.passage_max_len)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=embedding.pooling)
    prompts = {"query": embedding.query_instruction} if embedding.query_instruction else None
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], prompts=prompts, device="cpu")
    model.save(str(model_dir), create_model_card=False)


TIMING_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second")


def reproducible_state(state) -> str:
    """The Trainer's state as JSON without wall-clock timings, so the same run gives the same directory.

    The timings go to the log (training_curves_callback); in the model directory they would
    change its hash on every run and defeat DVC's run-cache.
    """
    data = dataclasses.asdict(state)
    data["log_history"] = [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in data["log_history"]]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def finish(trainer, model_args, data_args, tmp: Path, out_dir: Path, embedding: EmbeddingParams) -> None:
    """Record how the model was trained, add the sentence-transformers config, and publish the directory."""
    (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; training_args.json says the same safely
    (tmp / "training_args.json").write_text(trainer.args.to_json_string(), encoding="utf-8")
    data = dataclasses.asdict(data_args)
    data["model_name_or_path"] = model_args.model_name_or_path
    (tmp / "data_args.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    (tmp / "trainer_state.json").write_text(reproducible_state(trainer.state), encoding="utf-8")
    write_sentence_transformers_config(tmp, embedding)
    for checkpoint in tmp.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    fingerprint_file(out_dir).unlink(missing_ok=True)
    logger.info("wrote %s", out_dir)


def training_curves_callback(log_dir: Path):
    """DVCLive's Hugging Face callback, writing loss, learning rate and gradient norm per logging step.

    Set up deliberately: DVCLive's defaults would rewrite the project's dvc.yaml (dvcyaml) and
    save an experiment of their own (save_dvc_exp); the plots are declared in dvc.yaml instead.
    """
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    class TrainingStepCallback(DVCLiveCallback):
        """Plot against the trainer's global step, not DVCLive's count of logging events; wall-clock
        figures go to the log only, so the tracked curves are the same bytes for the same run."""

        def setup(self, args, state, model):
            # DVCLive's params.yaml of every TrainingArguments field is left out: output/finetuned keeps them
            # (training_args.json), and a file beside the curves that is neither metric nor plot would keep DVC
            # from saving the stage to its run-cache (dvc.stage.Stage.run: no uncached plain outputs).
            self._initialized = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.live is not None:
                self.live.step = state.global_step
            logs = logs or {}
            timings = {k: v for k, v in logs.items() if k in TIMING_KEYS}
            if timings:
                logger.info("training time: %s", ", ".join(f"{k} {v}" for k, v in timings.items()))
            super().on_log(args, state, control, logs={k: v for k, v in logs.items() if k not in TIMING_KEYS},
                           **kwargs)

    live = Live(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False, report=None, monitor_system=False)
    return TrainingStepCallback(live=live, log_model=False)


VERBOSE_VARIABLE = "ZH_RETRIEVAL_VERBOSE"  # =1: FlagEmbedding's and the Trainer's full logs, also under DVC


def quiet_library_logs() -> None:
    """Keep FlagEmbedding's dumps out of the log: its runner prints every TrainingArguments field
    and the model config, and warns "distributed training: True" for a single CPU process
    (it tests local_rank != -1, and the Trainer sets 0). `summary_line` says what matters instead."""
    logging.getLogger("FlagEmbedding.abc.finetune.embedder.AbsRunner").setLevel(logging.ERROR)
    logging.getLogger("FlagEmbedding.finetune.embedder.encoder_only.base.runner").setLevel(logging.WARNING)
    # FlagEmbedding's collator pads with max_length and no truncation, once per batch; harmless.
    warnings.filterwarnings("ignore", message="`max_length` is ignored when `padding`=`True`")


def summary_line(base_model: Path, embedding: EmbeddingParams, params: FinetuneParams, world_size: int) -> str:
    processes = (f"{per_device_batch_size(params.batch_size, world_size)} x {world_size} processes, negatives "
                 "shared across them" if world_size > 1 else "1 process")
    return (f"fine-tuning {base_model}: lr {params.lr}, epochs {params.epochs:g}, batch {params.batch_size}"
            f" ({processes}), groups of {params.train_group_size}, temperature {params.temperature}, "
            f"{embedding.pooling} pooling, query/passage {embedding.query_max_len}/{embedding.passage_max_len} "
            f"tokens, {params.precision}, seed {params.seed}"
            f"{', distilling the teacher scores in the training file' if params.distill else ''} "
            f"(full arguments: {VERBOSE_VARIABLE}=1)")


def train(base_model: Path, train_file: Path, out_dir: Path, embedding: EmbeddingParams, params: FinetuneParams,
          log_dir: Path | None = None, verbose: bool = False) -> None:
    from FlagEmbedding.finetune.embedder.encoder_only.base import EncoderOnlyEmbedderRunner

    world_size = world_size_from_environment()
    if not verbose:
        quiet_library_logs()
    if int(os.environ.get("RANK", "0")) == 0:
        logger.info("%s", summary_line(base_model, embedding, params, world_size))
    tmp = partial_dir(out_dir)
    model_args, data_args, training_args = flag_arguments(base_model, train_file, tmp, embedding, params, world_size,
                                                          count_train_queries(train_file))
    checkpoint = latest_checkpoint(tmp) if params.checkpoint_every and tmp.is_dir() else None
    training_args.resume_from_checkpoint = str(checkpoint) if checkpoint else None
    runner = EncoderOnlyEmbedderRunner(model_args=model_args, data_args=data_args, training_args=training_args)
    if checkpoint is not None:
        restore_checkpoint_weights(runner.model, checkpoint)
    try:
        with contextlib.ExitStack() as curves:
            if log_dir is not None and runner.trainer.is_world_process_zero():
                # DVCLive appends to its files at every logging step: written beside log_dir and renamed
                # into place with the model, a killed run leaves no half-drawn curves in git's view.
                runner.trainer.add_callback(training_curves_callback(curves.enter_context(atomic_dir(log_dir))))
            runner.run()
            if runner.trainer.is_world_process_zero():
                finish(runner.trainer, model_args, data_args, tmp, out_dir, embedding)
    except Exception as error:
        free = free_space(out_dir.parent)
        # torch.save reports a full disk only as "file write failed"; with nothing free, that is what it was.
        if not (is_out_of_space(error) or ("file write failed" in str(error) and free < FULL_DISK_BYTES)):
            raise
        if not params.checkpoint_every:  # nothing to resume from: give the space back
            shutil.rmtree(tmp, ignore_errors=True)
        raise OutOfSpace(out_dir, space_needed(base_model, params), free) from error


FULL_DISK_BYTES = 1 << 20
# A checkpoint holds the weights and Adam's two moments; save_total_limit keeps two of them, and a third
# is written before the oldest is deleted.
CHECKPOINT_WEIGHT_COPIES = 3 * 3


def space_needed(base_model: Path, params: FinetuneParams, partial: Path | None = None) -> int:
    """About what training writes beside OUT_DIR: the model (fp32, as it is loaded: 4 bytes a parameter of
    the base model's safetensors) and its tokenizer, and with checkpoints on, the checkpoints it keeps,
    less what an interrupted run being resumed already holds in `partial`."""
    weights = fp32_weight_bytes(base_model)
    needed = tree_size(base_model) - weights_file_bytes(base_model) + weights
    needed += weights * CHECKPOINT_WEIGHT_COPIES if params.checkpoint_every else 0
    return max(needed - (tree_size(partial) if partial is not None else 0), 0)


def weights_file_bytes(model_dir: Path) -> int:
    return sum(tree_size(p) for p in model_dir.glob("*.safetensors"))


def fp32_weight_bytes(model_dir: Path) -> int:
    """4 bytes for every parameter the model's safetensors hold, read from their headers alone."""
    from safetensors import safe_open

    parameters = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as f:
            for name in f.keys():
                parameters += math.prod(f.get_slice(name).get_shape())
    return 4 * parameters


def restore_checkpoint_weights(model, checkpoint: Path) -> None:
    """Load a checkpoint's weights into the encoder inside FlagEmbedding's wrapper.

    FlagEmbedding saves the inner encoder's weights (keys without the wrapper's `model.` prefix).
    The Trainer loads a checkpoint into the wrapper with strict=False, which then matches no key
    and silently resumes from the *base* weights with the checkpoint's optimizer state. So the
    weights are restored here, strictly; the Trainer still restores optimizer, scheduler, RNG
    state and step, and its own load (matching nothing) changes nothing.
    """
    from safetensors.torch import load_file

    model.model.load_state_dict(load_file(checkpoint / "model.safetensors"), strict=True)
    model._keys_to_ignore_on_save = None  # read by the Trainer after its load; absent on the wrapper
    logger.info("restored the encoder's weights from %s", checkpoint)
