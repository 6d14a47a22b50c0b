"""Build the demo's cross-encoder: the bundled embedder's encoder under a one-logit scoring head,
pretrained as a cross-encoder on the Debian texts the embedder learnt from.

    apt-get download debian-reference-zh-cn debian-faq-zh-cn fortunes-zh
    python scripts/build_reranker.py models/zh-mini-embedder models/zh-mini-reranker \\
        --pretrain debian-reference-zh-cn_*.deb debian-faq-zh-cn_*.deb fortunes-zh_*.deb

A cross-encoder reads `[CLS] query [SEP] passage [SEP]` and scores the pair with one logit, from
BERT's pooler over [CLS] (`BertForSequenceClassification`, `num_labels=1`), the layout of
bge-reranker-base and bge-reranker-v2-m3, so every stage loads it through the code that loads
those. The encoder's weights start as the embedder's; the pooler and the head are new (the
embedder was trained with mean pooling and has neither), drawn with `--seed`.

Without `--pretrain` that is the whole build: a reranker whose scores order candidates at random.
With it, the model then learns to score pairs from the texts scripts/build_pretrained_model.py
trains the embedder on (a section heading or a poem's title with its text, a question with its
answer, a sentence with the passage it came from), as bge-reranker was pretrained before anyone
fine-tuned it: each query's group is its passage, negatives the embedder ranks closest to that
passage (another section's, so not a second right answer) and random ones, under the listwise
cross-entropy FlagEmbedding's reranker trains with. Pairs are cut to the demo's
`reranker.max_length` (192 tokens, 64 of them for the query), as the pipeline reads them. It never
sees the demo's manual pages, so its *base* row on the demo means what a published reranker's
would: what it knew before this corpus.

Same input, seed, steps and threads give the same bytes on one machine (other CPUs round differently).
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification, PreTrainedTokenizerBase

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_pretrained_model as texts  # noqa: E402  (the embedder's Debian readers and pair sampling)

logger = logging.getLogger("build_reranker")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
PIECE_LENGTHS = (48, 80, 120)  # characters, ~tokens: each fits the passage's share of a 192-token pair


MODEL_CARD = """---
license: gpl-3.0-or-later
language: zh
library_name: transformers
pipeline_tag: text-classification
tags: [cross-encoder, reranker, demo]
---
# zh-mini-reranker: a 2-layer Chinese cross-encoder for this project's demo

**What it is.** `BertForSequenceClassification` with one logit, reading `[CLS] query [SEP] passage [SEP]`
(the layout of bge-reranker-base): the encoder of `zh-mini-embedder` under a new pooler and head,
pretrained by `scripts/build_reranker.py --pretrain` on 2 CPU cores ({steps} steps of {queries} queries,
each with its passage and {negatives} negatives, {hard} of them the passages of other sections the embedder
ranks closest; listwise cross-entropy, lr {lr}; loss {first:.3f} over the first 50 steps, {last:.3f} over the
last 50, chance ln {group} = {chance:.3f}) on the Debian texts the embedder learnt from: headings and
sections, questions and answers, titles and poems, sentences and their passages, cut to 192-token pairs.
It never saw the demo's manual pages.

**What it is not.** A general reranker: it knows a few MB of technical and classical Chinese and
is far below bge-reranker-base. It exists so that the demo's *base* reranker is one that was trained
before the demo's corpus, as a published one is; what it scores on the demo is in
`metrics/dev/reranked_base.json`.

**Use.** `FlagReranker(dir, normalize=False)`, or this project's `reranker.base_model`.
"""


@dataclass(frozen=True)
class Piece:
    """A passage of the pretraining text and the section it belongs to (its neighbours there are not negatives)."""

    section: int
    title: str | None  # the section's heading, question or title; only on a section's first piece
    passage: str
    weight: float


def fresh_cross_encoder(embedder_dir: Path, seed: int) -> BertForSequenceClassification:
    config = AutoConfig.from_pretrained(embedder_dir, num_labels=1, trust_remote_code=False)
    if getattr(config, "type_vocab_size", 0) < 2:  # the passage is segment 1, as FlagEmbedding's collator sends it
        raise SystemExit(f"{embedder_dir}: type_vocab_size {config.type_vocab_size}; a cross-encoder needs 2")
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(embedder_dir, config=config, trust_remote_code=False)
    model.config.architectures = ["BertForSequenceClassification"]
    return model


def save(model: BertForSequenceClassification, embedder_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(embedder_dir, trust_remote_code=False)  # it loads: the copies below will too
    for name in TOKENIZER_FILES:
        if (embedder_dir / name).is_file():
            shutil.copyfile(embedder_dir / name, out_dir / name)


def build(embedder_dir: Path, out_dir: Path, seed: int) -> None:
    """The untrained cross-encoder: the embedder's encoder under a fresh head."""
    save(fresh_cross_encoder(embedder_dir, seed), embedder_dir, out_dir)


# ---------------------------------------------------------------- pretraining pairs


def pieces_of(sections: list[tuple[str | None, str]], weight: float, first_section: int, seed: int) -> list[Piece]:
    """Each section's text in consecutive pieces of a random length from PIECE_LENGTHS."""
    rng = random.Random(seed)
    pieces = []
    for offset, (title, body) in enumerate(sections):
        start, index = 0, 0
        while start < len(body):
            length = rng.choice(PIECE_LENGTHS)
            passage = body[start : start + length]
            start += length
            if len(texts.CJK.findall(passage)) >= 20:
                pieces.append(Piece(first_section + offset, title[:64] if title and index == 0 else None, passage,
                                    weight))
                index += 1
    return pieces


def nearest_other_sections(vectors: np.ndarray, sections: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """For each row, the `k` rows of other sections most similar to it, nearest first (exact inner product)."""
    matrix = torch.from_numpy(vectors)
    section_of = torch.from_numpy(sections)
    nearest = []
    for start in range(0, len(vectors), block):
        scores = matrix[start : start + block] @ matrix.T
        scores[section_of[start : start + block, None] == section_of[None, :]] = -math.inf
        nearest.append(scores.topk(k, dim=1).indices.numpy())
    return np.concatenate(nearest)


def query_for(piece: Piece, rng: random.Random) -> tuple[str, str]:
    """(query, positive passage) drawn afresh: the heading, a sentence of the passage (cut out of it half
    the time), or the passage's opening, with bge-zh's instruction half the time as the embedder was trained."""
    unit = texts.Unit(piece.title, piece.passage, piece.weight)
    return texts.sample_pair(unit, rng)


def pair_inputs(tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]], max_length: int,
                query_max_len: int) -> dict[str, torch.Tensor]:
    """`[CLS] query [SEP] passage [SEP]`, the query cut to `query_max_len` tokens and the passage to the rest,
    as FlagReranker builds a pair when the pipeline reranks."""
    queries = tokenizer([q for q, _ in pairs], add_special_tokens=False, truncation=True, max_length=query_max_len)
    passages = tokenizer([p for _, p in pairs], add_special_tokens=False, truncation=True, max_length=max_length)
    items = [tokenizer.prepare_for_model(q, p, truncation="only_second", max_length=max_length)
             for q, p in zip(queries["input_ids"], passages["input_ids"], strict=True)]
    return tokenizer.pad(items, return_tensors="pt")


@dataclass(frozen=True)
class Pretraining:
    steps: int = 1200
    queries_per_step: int = 16
    group_size: int = 8  # 1 positive + 7 negatives, the pipeline's train_group_size
    # Of the 7: drawn from the passage's 30 nearest other-section pieces, the rest at random. With 5 the
    # loss stayed near ln 8 for 300 steps (dev nDCG@10 0.243 reranking the demo's first stage); with 2, 0.317.
    hard_negatives: int = 2
    nearest: int = 30
    lr: float = 1e-3  # 3e-4 barely moved the loss in 300 steps; 2e-3 diverged
    max_length: int = 192
    query_max_len: int = 64


def pretrain(model: BertForSequenceClassification, tokenizer: PreTrainedTokenizerBase, pieces: list[Piece],
             nearest: np.ndarray, recipe: Pretraining, seed: int) -> list[float]:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    cumulative = list(np.cumsum([piece.weight for piece in pieces]))

    def loss_at(step: int) -> torch.Tensor:
        pairs = []
        for index in rng.choices(range(len(pieces)), cum_weights=cumulative, k=recipe.queries_per_step):
            query, positive = query_for(pieces[index], rng)
            hard = rng.sample(list(nearest[index]), recipe.hard_negatives)
            easy = []
            while len(easy) < recipe.group_size - 1 - recipe.hard_negatives:
                other = rng.randrange(len(pieces))
                if pieces[other].section != pieces[index].section and other not in hard:
                    easy.append(other)
            pairs += [(query, positive)] + [(query, pieces[i].passage) for i in hard + easy]
        inputs = pair_inputs(tokenizer, pairs, recipe.max_length, recipe.query_max_len)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as the embedder was built: a third less time a step
            logits = model(**inputs).logits.view(recipe.queries_per_step, recipe.group_size).float()
        return F.cross_entropy(logits, torch.zeros(recipe.queries_per_step, dtype=torch.long))  # the positive is first

    return texts.optimize(model, loss_at, recipe.steps, recipe.lr, warmup=max(1, recipe.steps // 10), log=logger)


def pretraining_pieces(reference_deb: Path, faq_deb: Path, fortunes_deb: Path, seed: int) -> list[Piece]:
    """The embedder's texts, weighted as it drew them: the technical prose TECHNICAL_WEIGHT times the poems."""
    with tempfile.TemporaryDirectory() as tmp:
        reference = texts.debian_reference(texts.unpack(reference_deb, Path(tmp) / "reference"))
        faq = texts.debian_faq(texts.unpack(faq_deb, Path(tmp) / "faq"))
        poems, sayings = texts.fortunes(texts.unpack(fortunes_deb, Path(tmp) / "fortunes"))
    technical = pieces_of(reference + faq, texts.TECHNICAL_WEIGHT, 0, seed)
    literary = pieces_of(poems + [(None, saying) for saying in sayings], 1.0, len(reference) + len(faq), seed + 1)
    return technical + literary


def embedder_neighbours(embedder_dir: Path, pieces: list[Piece], k: int) -> np.ndarray:
    """Each piece's `k` nearest pieces of other sections by the embedder: the hard negatives' pool."""
    from zh_retrieval.retrieval.encode import encode, load_embedder

    embedder = load_embedder(embedder_dir, "mean", "fp32")
    vectors = encode(embedder, [piece.passage for piece in pieces], max_length=texts.MAX_TOKENS, batch_size=64)
    return nearest_other_sections(vectors, np.array([piece.section for piece in pieces]), k)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embedder_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain", type=Path, nargs=3, metavar=("REFERENCE_DEB", "FAQ_DEB", "FORTUNES_DEB"),
                        help="debian-reference-zh-cn, debian-faq-zh-cn and fortunes-zh .debs to pretrain on")
    defaults = Pretraining()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--hard-negatives", type=int, default=defaults.hard_negatives)
    parser.add_argument("--threads", type=int, default=1)  # one: the weights then do not depend on the core count
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = fresh_cross_encoder(args.embedder_dir, args.seed)
    if args.pretrain:
        pieces = pretraining_pieces(*args.pretrain, seed=args.seed)
        recipe = Pretraining(steps=args.steps, lr=args.lr, hard_negatives=args.hard_negatives)
        nearest = embedder_neighbours(args.embedder_dir, pieces, recipe.nearest)
        logger.info("%d pieces in %d sections", len(pieces), len({piece.section for piece in pieces}))
        tokenizer = AutoTokenizer.from_pretrained(args.embedder_dir, trust_remote_code=False)
        losses = pretrain(model, tokenizer, pieces, nearest, recipe, args.seed)
        first, last = sum(losses[:50]) / len(losses[:50]), sum(losses[-50:]) / len(losses[-50:])
        logger.info("final loss %.3f (first 50 steps %.3f; chance ln %d = %.3f)", last, first, recipe.group_size,
                    math.log(recipe.group_size))
    save(model, args.embedder_dir, args.out_dir)
    if args.pretrain:
        (args.out_dir / "README.md").write_text(model_card(recipe, first, last), encoding="utf-8")


def model_card(recipe: Pretraining, first_loss: float, last_loss: float) -> str:
    return MODEL_CARD.format(steps=recipe.steps, queries=recipe.queries_per_step, negatives=recipe.group_size - 1,
                             hard=recipe.hard_negatives, lr=recipe.lr, first=first_loss, last=last_loss,
                             group=recipe.group_size, chance=math.log(recipe.group_size))


if __name__ == "__main__":
    main()
