"""params.yaml, parsed once per stage into typed sections that validate themselves.

    params = load_params(Path("params.yaml"))
    params.mine.positive      # "bm25_passage"
    params.raw["finetune"]    # the section as written, for the report and model cards that quote it

Read with ruamel.yaml (YAML 1.2, as DVC reads it): `dvc exp run -S lr=2e-5` writes `lr: 2e-05`,
which PyYAML's YAML 1.1 would hand back as the *string* '2e-05'. Every value is checked before a
stage does any expensive work, and a bad one raises InputError naming the file and the key.

Each section's fields say what they mean; fixed choices are `Literal` types, checked against
their arguments. Plain frozen dataclasses rather than pydantic: the checks are a few lines each,
the errors keep the project's one-line `file: key ... (fix)` form, and nothing new is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from zh_retrieval.core.errors import InputError

Pooling = Literal["cls", "mean"]
Precision = Literal["fp32", "fp16", "bf16"]
EncodePrecision = Literal["auto", "fp32", "fp16", "bf16"]
# Every evaluation scores both: choices (merge weight, hybrid weights, epochs, recipes) read dev;
# test is reported once, read by no choice.
EVAL_SPLITS = ("dev", "test")
GuardReference = Literal["trained_positive", "positive_document"]
# The text a document contributes: `truncated` is the document cut at passage_max_len tokens (what
# the trainer and a plain evaluation see, passage 0); `best_passage` the passage the base model
# scores highest for the query; `bm25_passage` the passage BM25 scores highest.
Positive = Literal["truncated", "best_passage", "bm25_passage"]
PassageChoice = Literal["truncated", "best_passage"]
BM25Tokenizer = Literal["jieba", "bigram"]
# The run the reranker rescores: a hybrid (evaluate_hybrid's), the fine-tuned dense model's, or BM25's.
FirstStage = Literal["hybrid_rrf", "hybrid_weighted", "dense", "bm25"]
RerankerChoice = Literal["base", "finetuned"]
RerankerNegatives = Literal["mined", "bm25"]

# Values an older params.yaml may still hold: (key, old value) => the value that replaced it.
RENAMED_VALUES = {
    ("mine.positive", "first_passage"): "truncated",
    ("mine.guard", "document"): "truncated",
    ("mine.negative_text", "document"): "truncated",
}
RENAMED_KEYS = {  # old key => (new key, an example of the new setting)
    "mine.use_dataset_negatives": ("mine.dataset_negative_share",
                                   "e.g. dataset_negative_share: 0.25 (a share of the slots, sampled), or 0 for none"),
    "finetune.per_device_batch_size": ("finetune.batch_size", "the global batch in queries, the same on any number of "
                                       "GPUs: per-device batch x processes as it was"),
    "finetune.checkpoint_steps": ("finetune.checkpoint_every", "a fraction of an epoch, e.g. checkpoint_every: 0.1, "
                                  "or null for none"),
    "prepare.eval_split": ("prepare.dev_from_train", "evaluation now scores dev and test both; remove eval_split"),
    "hybrid.dense_weight": ("hybrid.dense_weights",
                            "a grid chosen from on dev, e.g. dense_weights: [0.0, 0.1, ..., 1.0]"),
    "hybrid.rrf_k": ("hybrid.rrf_ks", "a grid chosen from on dev, e.g. rrf_ks: [10, 30, 60, 100]"),
}
DEEPSPEED_CONFIG_DIR = "configs"  # the finetune stage depends on this directory in dvc.yaml


class Reader:
    """Pulls typed values out of the params mapping, naming the key and the file on a bad one."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    def has(self, key: str) -> bool:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def value(self, key: str) -> Any:
        if not self.has(key):
            raise InputError(self.path, f"missing parameter `{key}`")
        node: Any = self.data
        for part in key.split("."):
            node = node[part]
        return node

    def bad(self, key: str, value: Any, expected: str) -> InputError:
        return InputError(self.path, f"`{key}` is {value!r}; expected {expected}")

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.bad(key, value, f"an integer >= {minimum}")
        return value

    def optional_integer(self, key: str, minimum: int = 0, none: tuple[Any, ...] = (None,)) -> int | None:
        return None if self.value(key) in none else self.integer(key, minimum)

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

    def string(self, key: str, allow_empty: bool = False) -> str:
        value = self.value(key)
        if value is None and allow_empty:
            return ""
        if not isinstance(value, str) or (not value and not allow_empty):
            raise self.bad(key, value, "a string")
        return value

    def choice(self, key: str, choices: Any) -> Any:
        """One of a `Literal`'s values; an old value that was renamed gets an error naming its replacement."""
        value = self.value(key)
        allowed = get_args(choices)
        renamed = RENAMED_VALUES.get((key, value)) if isinstance(value, str) else None
        if renamed is not None:
            raise InputError(self.path, f"`{key}: {value}` is now called `{renamed}`", fix=f"set {key}: {renamed}")
        if value not in allowed:
            raise self.bad(key, value, f"one of {', '.join(allowed)}")
        return value


@dataclass(frozen=True)
class EmbeddingParams:
    """How text becomes a vector; finetune and every evaluation read it, so a model is evaluated as trained."""

    pooling: Pooling
    query_instruction: str  # prepended to queries only, as FlagEmbedding's trainer does
    query_max_len: int
    passage_max_len: int  # tokens; a longer document is truncated, or cut into passages for MaxP

    @classmethod
    def read(cls, r: Reader) -> EmbeddingParams:
        return cls(pooling=r.choice("embedding.pooling", Pooling),
                   query_instruction=r.string("embedding.query_instruction", allow_empty=True),
                   query_max_len=r.integer("embedding.query_max_len", minimum=1),
                   passage_max_len=r.integer("embedding.passage_max_len", minimum=1))


@dataclass(frozen=True)
class LongDocumentParams:
    """MaxP: also score each document by its best passage, not only by its first passage_max_len tokens."""

    maxp: bool
    overlap: int  # tokens shared by consecutive passages; fewer than passage_max_len - 2 (the specials)

    @classmethod
    def read(cls, r: Reader) -> LongDocumentParams:
        overlap = r.integer("long_documents.overlap")
        if overlap >= r.integer("embedding.passage_max_len", minimum=1) - 2:
            raise r.bad("long_documents.overlap", overlap, "fewer tokens than embedding.passage_max_len - 2")
        return cls(maxp=r.boolean("long_documents.maxp"), overlap=overlap)


@dataclass(frozen=True)
class PrepareParams:
    dev_from_train: int  # a dataset without dev.jsonl: this many training queries become dev
    # Its own seed, not the top-level one: a seed sweep varies training, never the queries it is read on.
    dev_seed: int

    @classmethod
    def read(cls, r: Reader) -> PrepareParams:
        return cls(dev_from_train=r.integer("prepare.dev_from_train", minimum=1),
                   dev_seed=r.integer("prepare.dev_seed"))


@dataclass(frozen=True)
class MineParams:
    seed: int
    negatives_per_query: int  # null in the file: finetune.train_group_size - 1
    hard_ratio: float  # share of hard negatives among the mined ones (hard + random)
    hard_rank_min: int  # 1-based, inclusive: where in the base model's ranking hard negatives start
    hard_rank_max: int  # truncated guard: the window's last rank; best_passage: the window holds max - min + 1
    random_rank_min: int  # random negatives come from beyond this rank (if the corpus is larger)
    false_negative_margin: float | None  # skip candidates scoring above (1 - margin) x the positive's; None: off
    positive: Positive  # which text of the positive document trains
    guard: PassageChoice  # which scores rank and guard candidates: their truncated document or best passage
    # What the candidates' scores are held against: the passage written as `pos` (trained_positive),
    # or the positive document scored as the candidates are (positive_document).
    guard_reference: GuardReference
    negative_text: PassageChoice  # the text a negative contributes; best_passage: a random one's is any passage
    dataset_negative_share: float  # share of the negatives taken from the dataset's own, sampled with the seed
    max_share_without_hard: float  # stop when more than this share of queries end up with no hard negative

    @property
    def needs_passages(self) -> bool:
        return self.positive != "truncated" or "best_passage" in (self.guard, self.negative_text)

    @classmethod
    def read(cls, r: Reader) -> MineParams:
        group_size = r.integer("finetune.train_group_size", minimum=2)
        explicit = r.value("mine.negatives_per_query")
        hard_rank_min = r.integer("mine.hard_rank_min", minimum=1)
        hard_rank_max = r.integer("mine.hard_rank_max", minimum=hard_rank_min)
        params = cls(
            seed=r.integer("seed"),
            negatives_per_query=group_size - 1 if explicit is None else r.integer("mine.negatives_per_query", 1),
            hard_ratio=r.number("mine.hard_ratio", maximum=1.0),
            hard_rank_min=hard_rank_min,
            hard_rank_max=hard_rank_max,
            random_rank_min=r.integer("mine.random_rank_min", minimum=hard_rank_max),
            false_negative_margin=(None if r.value("mine.false_negative_margin") is None
                                   else r.number("mine.false_negative_margin", maximum=1.0)),
            positive=r.choice("mine.positive", Positive),
            guard=r.choice("mine.guard", PassageChoice),
            guard_reference=r.choice("mine.guard_reference", GuardReference),
            negative_text=r.choice("mine.negative_text", PassageChoice),
            dataset_negative_share=r.number("mine.dataset_negative_share", maximum=1.0),
            max_share_without_hard=r.number("mine.max_share_without_hard", maximum=1.0),
        )
        if params.needs_passages and not r.boolean("long_documents.maxp"):
            raise InputError(r.path, "`mine.positive`, `mine.guard` or `mine.negative_text` is a passage, which "
                             "needs the passage embeddings embed makes with `long_documents.maxp: true`",
                             fix="set long_documents.maxp: true, or every mine.* passage choice to truncated")
        return params


@dataclass(frozen=True)
class FinetuneParams:
    lr: float
    seed: int
    epochs: float
    batch_size: int  # queries per optimizer step over all processes; each process takes batch_size / world size
    train_group_size: int  # 1 positive + train_group_size - 1 negatives per query
    temperature: float
    warmup_ratio: float
    weight_decay: float
    logging_steps: int
    precision: Precision
    gradient_checkpointing: bool  # trade compute for memory on long passages
    deepspeed: str | None  # a DeepSpeed config file under configs/, or None
    nproc_per_node: int | None  # training processes on this machine; None ("auto"): one per visible GPU
    checkpoint_every: float | None  # a resumable checkpoint every this fraction of an epoch; None: no checkpoints
    distill: bool  # also learn the reranker's scores over each group (the teacher stage's pos_scores/neg_scores)

    @classmethod
    def read(cls, r: Reader) -> FinetuneParams:
        return cls(
            lr=r.number("lr", minimum=0.0, inclusive=False),
            seed=r.integer("seed"),
            epochs=r.number("finetune.epochs", minimum=0.0, inclusive=False),
            batch_size=r.integer("finetune.batch_size", minimum=1),
            train_group_size=r.integer("finetune.train_group_size", minimum=2),
            temperature=r.number("finetune.temperature", minimum=0.0, inclusive=False),
            warmup_ratio=r.number("finetune.warmup_ratio", maximum=1.0),
            weight_decay=r.number("finetune.weight_decay"),
            logging_steps=r.integer("finetune.logging_steps", minimum=1),
            precision=r.choice("finetune.precision", Precision),
            gradient_checkpointing=r.boolean("finetune.gradient_checkpointing"),
            deepspeed=deepspeed_config(r),
            nproc_per_node=r.optional_integer("finetune.nproc_per_node", minimum=1, none=(None, "auto")),
            checkpoint_every=(None if r.value("finetune.checkpoint_every") is None
                              else r.number("finetune.checkpoint_every", minimum=0.0, maximum=1.0, inclusive=False)),
            distill=r.boolean("finetune.distill"),
        )


def deepspeed_config(r: Reader) -> str | None:
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


@dataclass(frozen=True)
class EncodeParams:
    """How fast and how precisely texts are encoded, in embed, mine and evaluate (not training)."""

    batch_size: int
    precision: EncodePrecision  # auto: bf16 where the hardware does it natively, else fp32

    @classmethod
    def read(cls, r: Reader) -> EncodeParams:
        return cls(batch_size=r.integer("encode.batch_size", minimum=1),
                   precision=r.choice("encode.precision", EncodePrecision))


@dataclass(frozen=True)
class EvaluateParams:
    k: tuple[int, ...]  # cut-offs, ascending, each once
    use_query_instruction: bool  # off: evaluate without the instruction, to see what it is worth

    @classmethod
    def read(cls, r: Reader) -> EvaluateParams:
        k = r.value("evaluate.k")
        if not isinstance(k, list) or not k or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                       for v in k):
            raise r.bad("evaluate.k", k, "a non-empty list of positive integers")
        return cls(k=tuple(sorted(set(k))), use_query_instruction=r.boolean("evaluate.use_query_instruction"))


@dataclass(frozen=True)
class BM25Params:
    tokenizer: BM25Tokenizer  # jieba words, or overlapping Chinese character bigrams
    k1: float
    b: float

    @classmethod
    def read(cls, r: Reader) -> BM25Params:
        return cls(tokenizer=r.choice("bm25.tokenizer", BM25Tokenizer), k1=r.number("bm25.k1"),
                   b=r.number("bm25.b", maximum=1.0))


@dataclass(frozen=True)
class HybridParams:
    """The fusion grids; evaluate_hybrid picks the best point on dev and scores test with it."""

    dense_weights: tuple[float, ...]  # w: w x dense + (1 - w) x bm25 (scores min-max normalised, or RRF terms)
    rrf_ks: tuple[int, ...]  # reciprocal rank fusion's constant: a term is 1 / (rrf_k + rank)

    @classmethod
    def read(cls, r: Reader) -> HybridParams:
        weights = r.value("hybrid.dense_weights")
        if (not isinstance(weights, list) or not weights
                or not all(isinstance(w, int | float) and not isinstance(w, bool) and 0 <= w <= 1 for w in weights)):
            raise r.bad("hybrid.dense_weights", weights, "a non-empty list of numbers in [0, 1]")
        ks = r.value("hybrid.rrf_ks")
        if not isinstance(ks, list) or not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0
                                                         for k in ks):
            raise r.bad("hybrid.rrf_ks", ks, "a non-empty list of integers >= 0")
        return cls(dense_weights=tuple(sorted({float(w) for w in weights})), rrf_ks=tuple(sorted(set(ks))))


@dataclass(frozen=True)
class MergeParams:
    finetuned_weight: float  # merged = w x fine-tuned + (1 - w) x base (LM-Cocktail)
    seed: int

    @classmethod
    def read(cls, r: Reader) -> MergeParams:
        return cls(finetuned_weight=r.number("merge.finetuned_weight", maximum=1.0), seed=r.integer("seed"))


@dataclass(frozen=True)
class GeneralParams:
    """The forgetting check: a general-domain set every model is also evaluated on."""

    dataset: str  # a directory in MLDR's layout with corpus.jsonl, dev.jsonl and test.jsonl
    max_ndcg_drop: float  # the report warns when fine-tuning lowers general nDCG@10 by more than this

    @classmethod
    def read(cls, r: Reader) -> GeneralParams:
        return cls(dataset=r.string("general.dataset"), max_ndcg_drop=r.number("general.max_ndcg_drop", maximum=1.0))


@dataclass(frozen=True)
class RerankerParams:
    """The cross-encoder: where it starts, what it reads, and how finetune_reranker trains it."""

    base_model: str  # a cross-encoder directory (a one-logit sequence-classification head)
    max_length: int  # query + passage tokens, specials included, in training and scoring alike
    query_max_len: int  # the query's share of max_length
    lr: float
    seed: int
    epochs: float
    batch_size: int  # queries per optimizer step, each with its group
    train_group_size: int  # 1 positive + train_group_size - 1 negatives per query
    negatives: RerankerNegatives  # mined: mine's groups; bm25: drawn from BM25's top rerank.depth (reranker_groups)
    warmup_ratio: float
    weight_decay: float
    logging_steps: int
    precision: Precision

    @property
    def passage_max_len(self) -> int:
        """What FlagEmbedding's trainer calls passage_max_len: the tokens left to the passage."""
        return self.max_length - self.query_max_len

    @classmethod
    def read(cls, r: Reader) -> RerankerParams:
        query_max_len = r.integer("reranker.query_max_len", minimum=1)
        max_length = r.integer("reranker.max_length", minimum=1)
        if max_length <= query_max_len + 3:  # [CLS] query [SEP] passage [SEP]
            raise r.bad("reranker.max_length", max_length, f"more than reranker.query_max_len + 3 "
                        f"({query_max_len + 3}): room for the passage and the special tokens")
        return cls(base_model=r.string("reranker.base_model"), max_length=max_length, query_max_len=query_max_len,
                   lr=r.number("reranker.lr", minimum=0.0, inclusive=False), seed=r.integer("seed"),
                   epochs=r.number("reranker.epochs", minimum=0.0, inclusive=False),
                   batch_size=r.integer("reranker.batch_size", minimum=1),
                   train_group_size=r.integer("reranker.train_group_size", minimum=2),
                   negatives=r.choice("reranker.negatives", RerankerNegatives),
                   warmup_ratio=r.number("reranker.warmup_ratio", maximum=1.0),
                   weight_decay=r.number("reranker.weight_decay"),
                   logging_steps=r.integer("reranker.logging_steps", minimum=1),
                   precision=r.choice("reranker.precision", Precision))


@dataclass(frozen=True)
class RerankParams:
    """The second stage: which run it rescores, how deep, and which reranker's run the report leads with."""

    first_stage: FirstStage
    depth: int  # candidates rescored per query: the first stage's top `depth`
    batch_size: int  # pairs per forward pass
    model: RerankerChoice  # the reranker the pipeline uses downstream; both are evaluated

    @classmethod
    def read(cls, r: Reader) -> RerankParams:
        depth = r.integer("rerank.depth", minimum=1)
        ks = r.value("evaluate.k")
        run_length = max(ks) if isinstance(ks, list) and ks else 0
        if depth > run_length:
            raise InputError(r.path, f"`rerank.depth` is {depth}, but the first stage's run holds only the top "
                             f"{run_length} documents per query (max(evaluate.k))",
                             fix=f"set rerank.depth <= {run_length}, or add a larger k to evaluate.k")
        return cls(first_stage=r.choice("rerank.first_stage", FirstStage), depth=depth,
                   batch_size=r.integer("rerank.batch_size", minimum=1), model=r.choice("rerank.model", RerankerChoice))


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml, validated; `raw` is the mapping as written."""

    path: Path
    raw: dict[str, Any]
    dataset: str  # a directory in MLDR's layout
    base_model: str  # a model directory saved with save_pretrained
    embedding: EmbeddingParams
    long_documents: LongDocumentParams
    prepare: PrepareParams
    mine: MineParams
    finetune: FinetuneParams
    encode: EncodeParams
    evaluate: EvaluateParams
    bm25: BM25Params
    hybrid: HybridParams
    merge: MergeParams
    general: GeneralParams
    reranker: RerankerParams
    rerank: RerankParams


def read_yaml(path: Path) -> dict[str, Any]:
    """The params file as a mapping, unchecked."""
    if not path.is_file():
        raise InputError(path, "params file not found")
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        raise InputError(path, f"not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of parameters")
    return data


def load_params(path: Path) -> Params:
    """Read and check the whole file once; the first bad value raises InputError naming its key."""
    r = Reader(path, read_yaml(path))
    for old, (new, example) in RENAMED_KEYS.items():
        if r.has(old):
            raise InputError(path, f"`{old}` was replaced by `{new}`", fix=example)
    directories = {}
    for key in ("dataset", "base_model"):
        value = r.value(key)
        if not isinstance(value, str) or not value:
            raise InputError(path, f"`{key}` is {value!r}; expected a directory path")
        directories[key] = value
    return Params(path=path, raw=r.data, **directories, embedding=EmbeddingParams.read(r),
                  long_documents=LongDocumentParams.read(r), prepare=PrepareParams.read(r), mine=MineParams.read(r),
                  finetune=FinetuneParams.read(r), encode=EncodeParams.read(r), evaluate=EvaluateParams.read(r),
                  bm25=BM25Params.read(r), hybrid=HybridParams.read(r), merge=MergeParams.read(r),
                  general=GeneralParams.read(r), reranker=RerankerParams.read(r), rerank=RerankParams.read(r))
