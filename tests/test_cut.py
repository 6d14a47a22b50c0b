"""Passages cut once with their token ids: the same passages embed cut from text, and the same vectors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, ROOT, TINY_MODEL, write_params
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from zh_retrieval.core.errors import InputError
from zh_retrieval.data.cut import cut_documents, is_cut, load_cut, save_cut, tokenizer_fingerprint
from zh_retrieval.data.mldr import load_corpus
from zh_retrieval.data.passages import SPLIT_BATCH, split_many
from zh_retrieval.retrieval.encode import encode, encode_ids, load_embedder

DEMO_MODEL = ROOT / "models" / "zh-mini-embedder"


def documents() -> list[tuple[str, str]]:
    # Long enough for several 24-token passages; one empty-ish and one with Latin words cut mid-window.
    return [(f"{d}-{i}", text * (1 + 4 * i)) for i in range(3) for d, text in CORPUS.items()] + [
        ("latin", "configuration files are parsed " * 12), ("short", "ls")]


def test_passages_and_their_ids_are_what_the_text_path_cuts_and_tokenizes() -> None:
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    corpus = documents()
    cut = cut_documents(tokenizer, corpus, 24, 4)
    expected = split_many(tokenizer, [text for _, text in corpus], 24, 4)
    assert cut.docids == [d for d, _ in corpus] and cut.info["passages"] == sum(len(p) for p in expected)
    for row, (_, text) in enumerate(corpus):
        assert cut.passage_texts(row, text) == expected[row]
        first = cut.doc_start[row]
        for index, passage in enumerate(expected[row]):
            ids = tokenizer(passage, truncation=True, max_length=24)["input_ids"]
            assert cut.sequence(first + index).tolist() == ids
        # The document truncated is one of the sequences: its first passage's wherever the ids agree.
        truncated = tokenizer(text, truncation=True, max_length=24)["input_ids"]
        assert cut.sequence(cut.truncated[row]).tolist() == truncated
        assert (cut.truncated[row] == first) == (cut.sequence(first).tolist() == truncated)
    assert cut.ids.dtype == np.uint16 and cut.doc_chars.tolist() == [len(t) for _, t in corpus]


def odd_documents() -> list[tuple[str, str]]:
    """Latin words that windows start inside, characters BERT's normaliser drops, splits or strips (control and
    zero-width, ligatures, dotted capital I, combining accents), a word past WordPiece's 100 characters, emoji."""
    pieces = ["internationalization", "İstanbul", "ﬁnance", "café", "naïve", "  ", "\t", "\u200b", "\x07", "1234567",
              "🙂", "中文", "测试", "，", "。", "Hello", "WORLD", "e\u0301", "ǅ", "ß", "x" * 120, "ab-cd", "[SEP]",
              "##ing", "unbelievably"]
    return [(f"odd-{i}", "".join(pieces[(i * 7 + j * j) % len(pieces)] + " " * (j % 2) for j in range(40 + 9 * i)))
            for i in range(24)] + [("empty", ""), ("blank", "   ")]


def word_level_tokenizer() -> PreTrainedTokenizerBase:
    """Not BERT's: words split on whitespace and punctuation, looked up whole, [CLS] ... [SEP] around them."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = {word for _, text in odd_documents() for word in pre_tokenizers.Whitespace().pre_tokenize_str(text)}
    vocab = {token: i for i, token in enumerate(["[UNK]", "[CLS]", "[SEP]", "[PAD]", *sorted(w for w, _ in words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                           special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]")


@pytest.mark.parametrize("kind", ["bert", "word-level"])
def test_each_passages_ids_are_its_text_tokenized_on_odd_text(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """BERT's windows come from the document's own tokens wherever that gives what tokenizing the passage gives,
    and are tokenized again elsewhere; any other tokenizer tokenizes every passage. Either way, each passage's
    ids are its text tokenized with truncation, and the document truncated is its own tokens truncated."""
    from zh_retrieval.data import cut as cut_module

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL) if kind == "bert" else word_level_tokenizer()
    assert (cut_module.wordpiece_specials(tokenizer) is not None) == (kind == "bert")
    sliced = []
    decide = cut_module.slice_is_retokenized
    monkeypatch.setattr(cut_module, "slice_is_retokenized", lambda *args: sliced.append(decide(*args)) or sliced[-1])
    corpus = odd_documents()
    cut = cut_documents(tokenizer, corpus, 16, 4)
    if kind == "bert":
        assert sliced.count(True) > 100 and sliced.count(False) > 100, "both ways taken"
    for row, (_, text) in enumerate(corpus):
        first = cut.doc_start[row]
        for index, passage in enumerate(cut.passage_texts(row, text)):
            assert cut.sequence(first + index).tolist() == tokenizer(passage, truncation=True, max_length=16)[
                "input_ids"], (row, index, passage)
        truncated = tokenizer(text, truncation=True, max_length=16)["input_ids"]
        assert cut.sequence(cut.truncated[row]).tolist() == truncated
    assert cut.passage_texts(len(corpus) - 2, "") == [""] and cut.sequence(cut.doc_start[len(corpus) - 2]).tolist() \
        == tokenizer("")["input_ids"]


def test_the_demo_documents_truncated_are_their_first_passages() -> None:
    """On the demo every truncated document is token for token its first passage, so embed encodes it once."""
    tokenizer = AutoTokenizer.from_pretrained(DEMO_MODEL)
    corpus = list(load_corpus(ROOT / "data" / "sample").items())
    cut = cut_documents(tokenizer, corpus, 512, 64)
    assert cut.info["truncated_apart"] == 0
    np.testing.assert_array_equal(cut.truncated, cut.doc_start[:-1])
    assert len(cut.starts) == cut.info["passages"] + 1


def test_a_tokenizer_truncating_on_the_left_keeps_its_truncated_documents_apart() -> None:
    """Where truncation keeps a document's end, its truncated ids are not its first passage's: they are stored after
    the passages, as the tokenizer's own truncation gives them."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL, truncation_side="left")
    corpus = documents()
    cut = cut_documents(tokenizer, corpus, 24, 4)
    long_documents = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) > 22 for _, text in corpus)
    assert long_documents > 5 and cut.info["truncated_apart"] == long_documents
    for row, (_, text) in enumerate(corpus):
        truncated = tokenizer(text, truncation=True, max_length=24)["input_ids"]
        assert cut.sequence(cut.truncated[row]).tolist() == truncated
        assert (cut.truncated[row] >= cut.info["passages"]) == (cut.sequence(cut.doc_start[row]).tolist() != truncated)


def test_worker_processes_cut_what_one_process_cuts() -> None:
    """Batches cut in worker processes come back in order: the same arrays, truncated documents kept apart in
    several batches included, as in this process."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL, truncation_side="left")
    corpus = [(f"{docid}-{copy}", text) for copy in range(30) for docid, text in documents()]
    assert len(corpus) > 2 * SPLIT_BATCH
    alone = cut_documents(tokenizer, corpus, 24, 4, workers=1)
    pooled = cut_documents(tokenizer, corpus, 24, 4, workers=3)
    assert pooled.info == alone.info and pooled.info["truncated_apart"] > SPLIT_BATCH and pooled.docids == alone.docids
    for name in ("spans", "passage_doc", "ids", "starts", "truncated", "doc_chars"):
        assert getattr(pooled, name).dtype == getattr(alone, name).dtype
        np.testing.assert_array_equal(getattr(pooled, name), getattr(alone, name))


def test_vectors_from_ids_are_the_vectors_from_texts() -> None:
    """The same batches (by the texts' lengths) from ids as from texts: the same bytes."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    corpus = documents()
    cut = cut_documents(tokenizer, corpus, 24, 4)
    texts = [p for row, (_, text) in enumerate(corpus) for p in cut.passage_texts(row, text)]
    embedder = load_embedder(TINY_MODEL, "mean", "fp32")
    from_texts = encode(embedder, texts, 24, batch_size=5)
    from_ids = encode_ids(embedder, [cut.sequence(i) for i in range(len(texts))], [len(t) for t in texts],
                          batch_size=5)
    assert from_ids.tobytes() == from_texts.tobytes()


def test_a_saved_cut_loads_back_and_refuses_other_params_and_other_tokenizers(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    cut = cut_documents(tokenizer, documents(), 24, 4)
    out = tmp_path / "passages"
    out.mkdir()
    save_cut(cut, out)
    assert is_cut(out) and not is_cut(tmp_path)
    loaded = load_cut(out, 24, 4)
    assert loaded.docids == cut.docids and loaded.source == out
    for name in ("spans", "passage_doc", "ids", "starts", "truncated", "doc_chars"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(cut, name))
    with pytest.raises(InputError, match="passage_max_len 24, overlap 4; the params say 32, 4"):
        load_cut(out, 32, 4)
    # A model saved again (save_pretrained rewrites the tokenizer's files) still matches; another vocabulary not.
    resaved = tmp_path / "resaved"
    tokenizer.save_pretrained(resaved)
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(resaved)) == cut.info["tokenizer"]
    loaded.check_tokenizer(AutoTokenizer.from_pretrained(resaved), resaved)
    other = AutoTokenizer.from_pretrained(DEMO_MODEL)
    with pytest.raises(InputError, match="cut with another tokenizer than .*zh-mini-embedder"):
        loaded.check_tokenizer(other, DEMO_MODEL)
    shutil.rmtree(resaved)


def test_embed_refuses_passages_cut_with_another_tokenizer(tmp_path: Path, dataset_dir: Path) -> None:
    """The cut stage's ids read by a model with another vocabulary: a clear error, exit 2, no output."""
    params = write_params(tmp_path / "params.yaml", {"embedding.passage_max_len": 8, "long_documents.overlap": 2})
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    run = [sys.executable, "-m"]
    cut = subprocess.run([*run, "zh_retrieval.stages.cut", str(TINY_MODEL), str(dataset_dir), str(tmp_path / "cut"),
                          "--params", str(params)], capture_output=True, text=True, timeout=300, env=env)
    assert cut.returncode == 0, cut.stderr[-2000:]
    assert load_cut(tmp_path / "cut", 8, 2).docids == list(load_corpus(dataset_dir))
    embed = subprocess.run([*run, "zh_retrieval.stages.embed", str(DEMO_MODEL), str(tmp_path / "cut"),
                            str(tmp_path / "embeddings"), "--params", str(params)], capture_output=True, text=True,
                           timeout=300, env=env)
    assert embed.returncode == 2
    assert f"{tmp_path / 'cut'}: its passages were cut with another tokenizer than {DEMO_MODEL}'s" in embed.stderr
    assert not (tmp_path / "embeddings").exists()
