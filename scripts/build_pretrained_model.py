"""Build a small pretrained Chinese embedder from openly licensed Debian texts (contrastive, on 2 CPU cores).

    apt-get download debian-reference-zh-cn debian-faq-zh-cn fortunes-zh
    python scripts/build_pretrained_model.py debian-reference-zh-cn_*.deb debian-faq-zh-cn_*.deb \\
        fortunes-zh_*.deb models/zh-mini-embedder --steps 1600

A 2-layer BERT with a character vocabulary (every GB2312 character, ASCII, and every character of
the training text) learns to embed text for retrieval from pairs the texts give for free:
a section heading and its section (Debian Reference), a question and its answer (Debian FAQ), a
poem's title and the poem (fortunes-zh), and inverse-cloze pairs (a sentence and the passage it
came from, the sentence removed from the passage half the time), drawn afresh at every step; the
technical prose is drawn four times as often as the poems and sayings. The loss is symmetric in-batch
InfoNCE over mean-pooled, normalised vectors; half the queries carry bge-zh's query instruction,
so the model takes queries with or without it. Passages are up to 510 tokens, so every position
the pipeline uses is trained.

It is saved with `save_pretrained` (safetensors, a BERT tokenizer), the layout bge ships in, so
every stage loads it through the code that loads bge (with `embedding.pooling: mean`). Same .debs, seed, steps and
threads give the same weights on one machine (other CPUs round differently). 1,600 steps take
about 13 minutes on 2 cores (Debian 12's packages: debian-reference-zh-cn 2.100, debian-faq-zh-cn
11.1, fortunes-zh 2.98).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import logging
import math
import random
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel, BertTokenizerFast
from transformers.models.bert.tokenization_bert import BasicTokenizer

logger = logging.getLogger("build_pretrained_model")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
INSTRUCTION = "为这个句子生成表示以用于检索相关文章："  # bge-*-zh-v1.5's query instruction
MAX_TOKENS = 512
TECHNICAL_WEIGHT = 4.0
PASSAGE_LENGTHS = (96, 160, 256, 384, 510)  # characters, ~tokens: every position up to 512 gets trained
CJK = re.compile(r"[\u4e00-\u9fff]")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SENTENCE_END = re.compile(r"(?<=[。！？；!?])")
NBSP = "\u00a0"


@dataclass(frozen=True)
class Unit:
    """A passage of the training text, with the heading, question or title it answers, if any."""

    title: str | None
    passage: str
    weight: float = 1.0  # how often it is drawn, relative to the others


# ---------------------------------------------------------------- reading the Debian texts


def unpack(deb: Path, into: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into


def join_wrapped(lines: list[str]) -> str:
    """Undo hard line wrapping: CJK lines join without a space, Latin ones with one."""
    text = ""
    for line in (raw.strip(f" {NBSP}\t") for raw in lines):
        if not line:
            continue
        if text and not (CJK.match(line[0]) or CJK.match(text[-1]) or text[-1] in "，。：；、（“"):
            text += " "
        text += line
    return text


def paragraphs(lines: list[str]) -> list[str]:
    blocks, current = [], []
    for line in lines:
        if line.strip(f" {NBSP}\t"):
            current.append(line)
        elif current:
            blocks.append(join_wrapped(current))
            current = []
    if current:
        blocks.append(join_wrapped(current))
    return [b for b in blocks if CJK.search(b)]


def numbered_sections(lines: list[str], heading: re.Pattern) -> list[tuple[str, str]]:
    """(title, body) for each numbered heading; a heading wrapped onto a second line is rejoined."""
    sections: list[tuple[str, list[str]]] = []
    for line in lines:
        match = heading.match(line)
        if match:
            sections.append((match.group(1).strip(), []))
        elif sections and not sections[-1][1] and line.strip() and not line[0].isspace():
            sections[-1] = (sections[-1][0] + line.strip(), [])  # the title's second line
        elif sections:
            sections[-1][1].append(line)
    return [(title, "\n".join(paragraphs(body))) for title, body in sections if paragraphs(body)]


def read_lines(path: Path) -> list[str]:
    """A gzipped text file's lines, no-break spaces (its indentation and heading separators) made plain."""
    return gzip.decompress(path.read_bytes()).decode("utf-8").replace(NBSP, " ").splitlines()


def debian_reference(root: Path) -> list[tuple[str, str]]:
    lines = read_lines(next(root.rglob("debian-reference.zh-cn.txt.gz")))
    start = next(i for i, line in enumerate(lines) if line.startswith("第 1 章"))  # after the table of contents
    return numbered_sections(lines[start:], re.compile(r"^(?:第 \d+ 章|\d+(?:\.\d+)+\.) +(.+)$"))


def debian_faq(root: Path) -> list[tuple[str, str]]:
    lines = read_lines(next(root.rglob("debian-faq.zh-cn.txt.gz")))
    starts = [i for i, line in enumerate(lines) if line.startswith("第 1 章")]
    return numbered_sections(lines[starts[-1] if starts else 0 :], re.compile(r"^\d+(?:\.\d+)+\. +(.+)$"))


def fortunes(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(title, poem) from the Tang and Song collections, and the sayings of `chinese` as passages."""
    poems, sayings = [], []
    for path in sorted(root.rglob("games/fortunes/*")):
        if path.suffix == ".dat" or not path.is_file():
            continue
        for entry in ANSI.sub("", path.read_text(encoding="utf-8", errors="replace")).split("\n%\n"):
            lines = [line.strip() for line in entry.strip().splitlines() if line.strip()]
            if not lines:
                continue
            title = re.match(r"^《(.+)》$", lines[0])
            if title and len(lines) > 2:
                poems.append((title.group(1), "\n".join(line for line in lines[1:] if not line.startswith("作者"))))
            elif CJK.search(entry):
                sayings.append(join_wrapped([line for line in lines if not line.startswith("--")]))
    return poems, sayings


# ---------------------------------------------------------------- training pairs


def split_passages(text: str, rng: random.Random) -> list[str]:
    """Consecutive pieces of a text, each of a random length up to MAX_TOKENS - 2 characters."""
    pieces, start = [], 0
    while start < len(text):
        length = rng.choice(PASSAGE_LENGTHS)
        pieces.append(text[start : start + length])
        start += length
    return [p for p in pieces if len(CJK.findall(p)) >= 20]


def inverse_cloze(passage: str, rng: random.Random) -> tuple[str, str] | None:
    """(a sentence of the passage, the passage), the sentence cut out of it half the time."""
    sentences = [s for s in SENTENCE_END.split(passage) if len(CJK.findall(s)) >= 6]
    if len(sentences) < 2:
        return None
    sentence = rng.choice(sentences)
    rest = passage.replace(sentence, "", 1)
    keep = rng.random() < 0.5 or len(CJK.findall(rest)) < 20
    return sentence.strip()[:64], passage if keep else rest


def training_units(titled: list[tuple[str, str]], loose: list[str], seed: int, weight: float = 1.0) -> list[Unit]:
    rng = random.Random(seed)
    units = []
    for title, body in titled:
        units.extend(Unit(title[:64] if i == 0 else None, piece, weight)
                     for i, piece in enumerate(split_passages(body, rng)))
    for text in loose:
        units.extend(Unit(None, piece, weight) for piece in split_passages(text, rng))
    return units


def weighted_sample(members: list[Unit], cumulative: list[float], k: int, rng: random.Random) -> list[Unit]:
    """k distinct units, each drawn with probability proportional to its weight."""
    chosen: dict[int, None] = {}
    while len(chosen) < k:
        chosen.setdefault(rng.choices(range(len(members)), cum_weights=cumulative)[0], None)
    return [members[i] for i in chosen]


def sample_pair(unit: Unit, rng: random.Random) -> tuple[str, str]:
    """A fresh (query, passage) each time a unit is drawn: its title, or one of its sentences.

    Half the queries carry bge-zh's instruction, so the model serves queries with and without it.
    """
    cloze = inverse_cloze(unit.passage, rng)
    if unit.title and (cloze is None or rng.random() < 0.5):
        query, passage = unit.title, unit.passage
    elif cloze is not None:
        query, passage = cloze
    else:  # a short passage without a title: its own opening
        query, passage = unit.passage[:24], unit.passage
    return (INSTRUCTION + query if rng.random() < 0.5 else query), passage


# ---------------------------------------------------------------- model


def gb2312_characters() -> list[str]:
    """Every character GB2312 encodes (6,763 hanzi and 682 symbols): the floor of general Chinese text."""
    chars = []
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.append(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return chars


def vocabulary(texts: list[str]) -> list[str]:
    """Single characters: GB2312, ASCII and every character of the texts, each also as a `##` piece
    when it can stand inside a word (not CJK, which BERT's tokenizer always splits off)."""
    basic = BasicTokenizer(do_lower_case=True)
    chars = set(gb2312_characters()) | {chr(c) for c in range(33, 127) if not chr(c).isupper()}
    for text in texts:
        for word in basic.tokenize(text):
            chars.update(word)
    chars = {c for c in chars if basic.tokenize(c) == [c]}  # what lowercasing and accent-stripping keep
    ordered = sorted(chars)
    inside_words = [c for c in ordered if len(basic.tokenize(f"a{c}")) == 1]  # not split off as CJK or punctuation
    return SPECIAL_TOKENS + ordered + [f"##{c}" for c in inside_words]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def train(model: BertModel, tokenizer: BertTokenizerFast, units: list[Unit], steps: int, batch_size: int,
          lr: float, temperature: float, seed: int) -> list[float]:
    torch.manual_seed(seed)
    order = random.Random(seed)
    # Batches of passages of one length class: a batch pads to its longest passage, and mixing a
    # 510-token passage into every batch would make every step pay for 510 tokens.
    classes: dict[int, list[Unit]] = {}
    for unit in units:
        classes.setdefault(next(n for n in PASSAGE_LENGTHS if len(unit.passage) <= n), []).append(unit)
    lengths = sorted(n for n, members in classes.items() if len(members) >= batch_size)
    weights = [sum(unit.weight for unit in classes[n]) for n in lengths]
    cumulative = {n: list(itertools.accumulate(unit.weight for unit in classes[n])) for n in lengths}

    def loss_at(step: int) -> torch.Tensor:
        length = order.choices(lengths, weights)[0]
        batch = [sample_pair(unit, order) for unit in weighted_sample(classes[length], cumulative[length], batch_size,
                                                                      order)]
        queries = tokenizer([q for q, _ in batch], padding=True, truncation=True, max_length=96, return_tensors="pt")
        passages = tokenizer([p for _, p in batch], padding=True, truncation=True, max_length=MAX_TOKENS,
                             return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q = mean_pool(model(**queries).last_hidden_state, queries["attention_mask"]).float()
            d = mean_pool(model(**passages).last_hidden_state, passages["attention_mask"]).float()
        scores = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / temperature
        labels = torch.arange(len(batch))
        return (F.cross_entropy(scores, labels) + F.cross_entropy(scores.T, labels)) / 2

    return optimize(model, loss_at, steps, lr, warmup=max(1, steps // 20), log=logger)


def optimize(model: torch.nn.Module, loss_at: Callable[[int], torch.Tensor], steps: int, lr: float, warmup: int,
             log: logging.Logger) -> list[float]:
    """Both demo models' training loop: AdamW, linear warmup then linear decay, gradients clipped at 1.
    `loss_at(step)` draws the step's batch and returns its loss; every step's loss is returned and the
    mean of the last 50 logged every 50 steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup))))
    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        loss = loss_at(step)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            recent = sum(losses[-50:]) / len(losses[-50:])
            log.info("step %d/%d: loss %.3f, %.2f s/step", step + 1, steps, recent,
                     (time.perf_counter() - started) / (step + 1))
    model.eval()
    return losses


def sample_ndcg(model_dir: Path, dataset_dir: Path, instruction: str) -> float:
    """nDCG@10 on a dataset's test split, through the pipeline's own embed, encode, search and metrics."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from zh_retrieval.core.params import EmbeddingParams, EncodeParams
    from zh_retrieval.data.mldr import load_corpus, load_queries
    from zh_retrieval.retrieval.embedding import embed_corpus
    from zh_retrieval.retrieval.encode import encode, load_embedder, with_instruction
    from zh_retrieval.retrieval.metrics import mean_metrics, per_query_metrics
    from zh_retrieval.retrieval.search import search

    corpus = load_corpus(dataset_dir)
    queries = load_queries(dataset_dir, "test", corpus)
    embedding = EmbeddingParams(pooling="mean", query_instruction=instruction, query_max_len=64, passage_max_len=512)
    with tempfile.TemporaryDirectory() as tmp:
        docids = list(corpus)
        vectors = embed_corpus(model_dir, corpus.items(), Path(tmp) / "emb", embedding, EncodeParams(32, "fp32"))
    embedder = load_embedder(model_dir, "mean", "fp32")
    query_vectors = encode(embedder, with_instruction([q.text for q in queries], instruction), 64)
    scores, rows = search(vectors, query_vectors, 10)
    run = {q.query_id: {docids[i]: float(s) for s, i in zip(scores[n], rows[n])} for n, q in enumerate(queries)}
    qrels = {q.query_id: {d: 1 for d in q.positive_ids} for q in queries}
    return mean_metrics(per_query_metrics(qrels, run, (10,)))["ndcg_at_10"]


MODEL_CARD = """---
license: gpl-3.0-or-later
language: zh
library_name: transformers
pipeline_tag: sentence-similarity
tags: [sentence-transformers, feature-extraction, retrieval, demo]
---
# zh-mini-embedder: a 2-layer Chinese embedder for this project's demo

**What it is.** A BERT with {layers} layers of width {hidden} and a {vocab:,}-entry character
vocabulary (every GB2312 character, ASCII, and every character of its training text), trained
from random weights by `scripts/build_pretrained_model.py` on 2 CPU cores ({steps} steps of {batch}
pairs, symmetric in-batch InfoNCE at temperature {temperature}, mean pooling). The pairs come from
openly licensed Debian packages: headings and sections of the Debian Reference
(`debian-reference-zh-cn`, GPL-2.0+), questions and answers of the Debian FAQ (`debian-faq-zh-cn`),
titles and Tang/Song poems and sayings (`fortunes-zh`, GPL-3.0+), and sentences paired with
the passage they came from. It never saw the manual pages of the demo sample (`manpages-zh`).

**What it is not.** A general-purpose embedder: it knows a few MB of technical and classical
Chinese, has no subword vocabulary for other scripts, and is far below bge-base-zh-v1.5. It
exists so that the demo starts from a model whose rankings mean something, as fine-tuning bge does.

**Use.** Mean pooling, normalised; queries may carry bge-zh's instruction
(`{instruction}`) or not, as half of its training queries did. It loads like any
`save_pretrained` BERT: `AutoModel.from_pretrained(dir)`, or through this project's `embedding`
params with `pooling: mean`.

**Measured** (nDCG@10 on the demo sample's test split, 512-token documents): {scores}.
"""


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference_deb", type=Path, help="debian-reference-zh-cn_*.deb")
    parser.add_argument("faq_deb", type=Path, help="debian-faq-zh-cn_*.deb")
    parser.add_argument("fortunes_deb", type=Path, help="fortunes-zh_*.deb")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluate", type=Path, help="also print nDCG@10 on this dataset's test split")
    # One thread by default: the weights then do not depend on the core count, and a build beside
    # another busy process is not slowed by two threads fighting for one core.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        reference = debian_reference(unpack(args.reference_deb, Path(tmp) / "reference"))
        faq = debian_faq(unpack(args.faq_deb, Path(tmp) / "faq"))
        poems, sayings = fortunes(unpack(args.fortunes_deb, Path(tmp) / "fortunes"))
    titled = reference + faq + poems
    # The technical prose (Debian Reference and FAQ) is closest to the manual pages the demo searches,
    # but a quarter of the text: drawn TECHNICAL_WEIGHT times as often as poems and sayings.
    units = (training_units(reference + faq, [], args.seed, TECHNICAL_WEIGHT)
             + training_units(poems, sayings, args.seed + 1))
    characters = sum(len(body) for _, body in titled) + sum(map(len, sayings))
    logger.info("%d reference sections, %d FAQ answers, %d poems, %d sayings: %s characters -> %d passages",
                len(reference), len(faq), len(poems), len(sayings), f"{characters:,}", len(units))

    args.out_dir.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary([body for _, body in titled] + [title for title, _ in titled] + sayings + [INSTRUCTION])
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, tokenize_chinese_chars=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                        max_position_embeddings=MAX_TOKENS, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(args.seed)
    model = BertModel(config, add_pooling_layer=False)
    logger.info("vocabulary %d entries; model %s parameters", len(vocab),
                f"{sum(p.numel() for p in model.parameters()):,}")
    losses = train(model, tokenizer, units, args.steps, args.batch_size, args.lr, args.temperature, args.seed)
    model.save_pretrained(args.out_dir, safe_serialization=True)
    tokenizer.save_pretrained(args.out_dir)
    logger.info("saved %s; final loss %.3f (first 50 steps %.3f)", args.out_dir,
                sum(losses[-50:]) / min(50, len(losses)), sum(losses[:50]) / min(50, len(losses)))
    assert math.isfinite(losses[-1])
    scores = "not measured"
    if args.evaluate:
        measured = {label: sample_ndcg(args.out_dir, args.evaluate, instruction)
                    for label, instruction in (("without the instruction", ""), ("with it", INSTRUCTION))}
        scores = ", ".join(f"{value:.4f} {label}" for label, value in measured.items())
        logger.info("%s test nDCG@10: %s", args.evaluate, scores)
    (args.out_dir / "README.md").write_text(MODEL_CARD.format(
        layers=args.layers, hidden=args.hidden, vocab=len(vocab), steps=args.steps, batch=args.batch_size,
        temperature=args.temperature, instruction=INSTRUCTION, scores=scores), encoding="utf-8")


if __name__ == "__main__":
    main()
