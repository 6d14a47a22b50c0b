"""Typed, validated access to params.yaml.

Read with ruamel.yaml (YAML 1.2, as DVC reads it): `dvc exp run -S lr=2e-5` writes `lr: 2e-05`,
which PyYAML's YAML 1.1 would hand back as the *string* '2e-05'. Every value is checked here,
before a stage does any expensive work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from zh_retrieval.errors import InputError

POOLING_METHODS = ("cls", "mean")
PASSAGE_CHOICES = ("best_passage", "first_passage")
POSITIVE_CHOICES = ("best_passage", "bm25_passage", "first_passage")
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class EmbeddingParams:
    """How text becomes a vector; shared by finetune and evaluate so that both do the same."""

    pooling: str
    query_instruction: str  # prepended to queries only, as FlagEmbedding's trainer does
    query_max_len: int
    passage_max_len: int


@dataclass(frozen=True)
class LongDocumentParams:
    """MaxP: also score each document by its best passage, not only by its first max_len tokens."""

    maxp: bool
    overlap: int  # tokens shared by consecutive passages


@dataclass(frozen=True)
class PrepareParams:
    eval_split: str


@dataclass(frozen=True)
class MineParams:
    seed: int
    negatives_per_query: int
    hard_ratio: float  # share of hard negatives among the mined ones (hard + random)
    hard_rank_min: int  # 1-based, inclusive: the base model's ranks hard negatives come from
    hard_rank_max: int
    random_rank_min: int  # random negatives come from beyond this rank (if the corpus is larger)
    false_negative_margin: float | None  # skip candidates scoring above (1 - margin) x the positive's; None: off
    positive: str  # the positive document's passage the base model ("best_passage") or BM25 ("bm25_passage")
    #                scores highest, or "first_passage" (the truncated document)
    guard: str  # "best_passage": candidates ranked and guarded by their best passage, window over survivors;
    #             "document": by the truncated document, window over fixed ranks (the recipe before passages)
    negative_text: str  # "best_passage" or "document": the text a mined or dataset negative contributes
    dataset_negative_share: float  # share of the negatives taken from the dataset's own, sampled with the seed
    max_share_without_hard: float  # stop when more than this share of queries end up with no hard negative

    @property
    def needs_passages(self) -> bool:
        return self.positive != "first_passage" or "best_passage" in (self.guard, self.negative_text)


@dataclass(frozen=True)
class FinetuneParams:
    lr: float
    seed: int
    epochs: float
    per_device_batch_size: int
    train_group_size: int
    temperature: float
    warmup_ratio: float
    weight_decay: float
    logging_steps: int
    precision: str
    gradient_checkpointing: bool  # trade compute for memory on long passages
    deepspeed: str | None  # a DeepSpeed config file (e.g. configs/deepspeed_zero1.json), or None
    nproc_per_node: int | None  # training processes on this machine; None: one per visible GPU
    checkpoint_steps: int | None  # save a resumable checkpoint every N steps; None: no checkpoints


@dataclass(frozen=True)
class EncodeParams:
    """How fast and how precisely texts are encoded, in embed, mine and evaluate."""

    batch_size: int
    precision: str


@dataclass(frozen=True)
class EvaluateParams:
    k: tuple[int, ...]
    use_query_instruction: bool  # off: evaluate without the instruction, to see what it is worth


@dataclass(frozen=True)
class BM25Params:
    tokenizer: str  # "jieba" (words) or "bigram" (character bigrams)
    k1: float
    b: float


@dataclass(frozen=True)
class MergeParams:
    finetuned_weight: float  # merged = w x fine-tuned + (1 - w) x base (LM-Cocktail)
    seed: int


@dataclass(frozen=True)
class GeneralParams:
    """The forgetting check: a general-domain set every model is also evaluated on."""

    dataset: str  # a directory in MLDR's layout with corpus.jsonl and test.jsonl
    max_ndcg_drop: float  # the report warns when fine-tuning lowers general nDCG@10 by more than this


@dataclass(frozen=True)
class HybridParams:
    rrf_k: int  # reciprocal rank fusion: score = sum of 1 / (rrf_k + rank)
    dense_weight: float  # weighted fusion: w * dense + (1 - w) * bm25, each min-max normalised per query


def load_params(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "params file not found")
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        raise InputError(path, f"not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of parameters")
    return data


class _Reader:
    """Pulls typed values out of the params mapping, naming the key and the file on a bad one."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    def value(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise InputError(self.path, f"missing parameter `{key}`")
            node = node[part]
        return node

    def bad(self, key: str, value: Any, expected: str) -> InputError:
        return InputError(self.path, f"`{key}` is {value!r}; expected {expected}")

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.bad(key, value, f"an integer >= {minimum}")
        return value

    def number(self, key: str, minimum: float = 0.0, maximum: float = float("inf"), inclusive: bool = True) -> float:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.bad(key, value, "a number")
        low_ok = value >= minimum if inclusive else value > minimum
        if not low_ok or value > maximum:
            bound = ">=" if inclusive else ">"
            upper = f" and <= {maximum}" if maximum < float("inf") else ""
            raise self.bad(key, value, f"a number {bound} {minimum}{upper}")
        return float(value)

    def boolean(self, key: str) -> bool:
        value = self.value(key)
        if not isinstance(value, bool):
            raise self.bad(key, value, "true or false")
        return value

    def string(self, key: str, choices: tuple[str, ...] | None = None, allow_empty: bool = False) -> str:
        value = self.value(key)
        if value is None and allow_empty:
            return ""
        if not isinstance(value, str) or (not value and not allow_empty):
            raise self.bad(key, value, "a string")
        if choices is not None and value not in choices:
            raise self.bad(key, value, f"one of {', '.join(choices)}")
        return value


def embedding_params(path: Path) -> EmbeddingParams:
    r = _Reader(path, load_params(path))
    return EmbeddingParams(
        pooling=r.string("embedding.pooling", POOLING_METHODS),
        query_instruction=r.string("embedding.query_instruction", allow_empty=True),
        query_max_len=r.integer("embedding.query_max_len", minimum=1),
        passage_max_len=r.integer("embedding.passage_max_len", minimum=1),
    )


def long_document_params(path: Path) -> LongDocumentParams:
    r = _Reader(path, load_params(path))
    overlap = r.integer("long_documents.overlap")
    passage_max_len = r.integer("embedding.passage_max_len", minimum=1)
    if overlap >= passage_max_len - 2:
        raise r.bad("long_documents.overlap", overlap, "fewer tokens than embedding.passage_max_len - 2")
    return LongDocumentParams(maxp=r.boolean("long_documents.maxp"), overlap=overlap)


def prepare_params(path: Path) -> PrepareParams:
    r = _Reader(path, load_params(path))
    return PrepareParams(eval_split=r.string("prepare.eval_split", ("dev", "test")))


def mine_params(path: Path) -> MineParams:
    r = _Reader(path, load_params(path))
    group_size = r.integer("finetune.train_group_size", minimum=2)
    explicit = r.value("mine.negatives_per_query")
    negatives = group_size - 1 if explicit is None else r.integer("mine.negatives_per_query", minimum=1)
    hard_rank_min = r.integer("mine.hard_rank_min", minimum=1)
    hard_rank_max = r.integer("mine.hard_rank_max", minimum=hard_rank_min)
    if "use_dataset_negatives" in (r.value("mine") or {}):
        raise InputError(path, "`mine.use_dataset_negatives` was replaced by `mine.dataset_negative_share`",
                         fix="e.g. dataset_negative_share: 0.25 (a share of the slots, sampled), or 0 for none")
    params = MineParams(
        seed=r.integer("seed"),
        negatives_per_query=negatives,
        hard_ratio=r.number("mine.hard_ratio", maximum=1.0),
        hard_rank_min=hard_rank_min,
        hard_rank_max=hard_rank_max,
        random_rank_min=r.integer("mine.random_rank_min", minimum=hard_rank_max),
        false_negative_margin=(None if r.value("mine.false_negative_margin") is None
                               else r.number("mine.false_negative_margin", maximum=1.0)),
        positive=r.string("mine.positive", POSITIVE_CHOICES),
        guard=r.string("mine.guard", PASSAGE_CHOICES[:1] + ("document",)),
        negative_text=r.string("mine.negative_text", PASSAGE_CHOICES[:1] + ("document",)),
        dataset_negative_share=r.number("mine.dataset_negative_share", maximum=1.0),
        max_share_without_hard=r.number("mine.max_share_without_hard", maximum=1.0),
    )
    if params.needs_passages and not r.boolean("long_documents.maxp"):
        raise InputError(path, "`mine.positive`, `mine.guard` or `mine.negative_text` is a passage, which needs "
                         "the passage embeddings embed makes with `long_documents.maxp: true`",
                         fix="set long_documents.maxp: true, or every mine.* passage choice to first_passage/document")
    return params


def finetune_params(path: Path) -> FinetuneParams:
    r = _Reader(path, load_params(path))
    return FinetuneParams(
        lr=r.number("lr", minimum=0.0, inclusive=False),
        seed=r.integer("seed"),
        epochs=r.number("finetune.epochs", minimum=0.0, inclusive=False),
        per_device_batch_size=r.integer("finetune.per_device_batch_size", minimum=1),
        train_group_size=r.integer("finetune.train_group_size", minimum=2),
        temperature=r.number("finetune.temperature", minimum=0.0, inclusive=False),
        warmup_ratio=r.number("finetune.warmup_ratio", maximum=1.0),
        weight_decay=r.number("finetune.weight_decay"),
        logging_steps=r.integer("finetune.logging_steps", minimum=1),
        precision=r.string("finetune.precision", PRECISIONS),
        gradient_checkpointing=r.boolean("finetune.gradient_checkpointing"),
        deepspeed=deepspeed_config(r),
        nproc_per_node=(None if r.value("finetune.nproc_per_node") in (None, "auto")
                        else r.integer("finetune.nproc_per_node", minimum=1)),
        checkpoint_steps=(None if r.value("finetune.checkpoint_steps") is None
                          else r.integer("finetune.checkpoint_steps", minimum=1)),
    )


DEEPSPEED_CONFIG_DIR = "configs"  # the finetune stage depends on this directory in dvc.yaml


def deepspeed_config(r: _Reader) -> str | None:
    """The DeepSpeed config path, only from configs/: the finetune stage's DVC deps cover that directory,
    so editing the config re-runs training. A file elsewhere would change the run behind DVC's back."""
    value = r.string("finetune.deepspeed", allow_empty=True) or None
    if value is None:
        return None
    path = Path(value)
    if path.is_absolute() or path.parts[:1] != (DEEPSPEED_CONFIG_DIR,) or ".." in path.parts:
        raise r.bad("finetune.deepspeed", value, f"a file under {DEEPSPEED_CONFIG_DIR}/ (tracked as a dependency "
                    "of finetune), e.g. configs/deepspeed_zero1.json")
    if not path.is_file():
        raise r.bad("finetune.deepspeed", value, "an existing DeepSpeed config file")
    return value


def evaluate_params(path: Path) -> EvaluateParams:
    r = _Reader(path, load_params(path))
    k = r.value("evaluate.k")
    if not isinstance(k, list) or not k or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in k):
        raise r.bad("evaluate.k", k, "a non-empty list of positive integers")
    return EvaluateParams(k=tuple(sorted(set(k))), use_query_instruction=r.boolean("evaluate.use_query_instruction"))


def encode_params(path: Path) -> EncodeParams:
    r = _Reader(path, load_params(path))
    return EncodeParams(
        batch_size=r.integer("encode.batch_size", minimum=1),
        precision=r.string("encode.precision", ("auto", *PRECISIONS)),
    )


def bm25_params(path: Path) -> BM25Params:
    r = _Reader(path, load_params(path))
    return BM25Params(
        tokenizer=r.string("bm25.tokenizer", ("jieba", "bigram")),
        k1=r.number("bm25.k1"),
        b=r.number("bm25.b", maximum=1.0),
    )


def hybrid_params(path: Path) -> HybridParams:
    r = _Reader(path, load_params(path))
    return HybridParams(
        rrf_k=r.integer("hybrid.rrf_k", minimum=0),
        dense_weight=r.number("hybrid.dense_weight", maximum=1.0),
    )


def merge_params(path: Path) -> MergeParams:
    r = _Reader(path, load_params(path))
    return MergeParams(finetuned_weight=r.number("merge.finetuned_weight", maximum=1.0), seed=r.integer("seed"))


def general_params(path: Path) -> GeneralParams:
    r = _Reader(path, load_params(path))
    return GeneralParams(dataset=r.string("general.dataset"),
                         max_ndcg_drop=r.number("general.max_ndcg_drop", maximum=1.0))
