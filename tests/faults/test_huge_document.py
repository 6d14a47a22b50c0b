"""A 10 MB document among odd but valid text, through the stages' own commands (prepare, embed, evaluate_bm25).

Fault: a corpus in which one document is 10 MB of Chinese text (3.4 million characters, a stray dump of a
file), beside documents with characters outside the BMP, zero-width, full-width and traditional ones, and a
5,000-character query. Seen: nothing unusual; prepare's stats count the huge document. Checked: every stage
exits 0; metrics/prepare.json records the document as over a million characters with its length; embed cuts
it into exactly the passages its token count gives at passage_max_len with the params' overlap, so all of it
is searchable; BM25 finds it by a sentence placed at its very end.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL, write_lines, write_params
from test_odd_text import ODD_DOCUMENTS, long_odd_text
from transformers import AutoTokenizer
from workspace import env

pytestmark = pytest.mark.faults

HUGE_CHARACTERS = 3_400_000  # 3 bytes each in UTF-8: 10.2 MB
END_SENTENCE = "这一句只在超长文档的最后出现"


def stage(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", f"zh_retrieval.stages.{name}", *map(str, args)],
                            capture_output=True, text=True, env=env(), timeout=900)
    assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"
    return result


def test_a_10_mb_document_is_kept_cut_and_found(tmp_path: Path) -> None:
    rng = random.Random(3)
    characters = sorted(t for t in AutoTokenizer.from_pretrained(TINY_MODEL).get_vocab()
                        if len(t) == 1 and "\u4e00" <= t <= "\u9fff")
    huge = "".join(rng.choice(characters) for _ in range(HUGE_CHARACTERS - len(END_SENTENCE))) + END_SENTENCE
    assert len(huge.encode("utf-8")) > 10_000_000
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    documents = dict(ODD_DOCUMENTS, huge=huge, other="普通的文档，用来凑数", third="第三篇文档的内容")
    write_lines(dataset / "corpus.jsonl", [{"docid": d, "text": t} for d, t in documents.items()])

    def query(qid: str, text: str, docid: str) -> dict:
        return {"query_id": qid, "query": text, "positive_passages": [{"docid": docid, "text": documents[docid]}],
                "negative_passages": []}

    write_lines(dataset / "train.jsonl", [query("t1", "繁體檔案", "traditional"),
                                          query("t2", "全角字母", "full_width")])
    write_lines(dataset / "dev.jsonl", [query("d1", long_odd_text(5000, seed=2), "other")])
    write_lines(dataset / "test.jsonl", [query("e1", END_SENTENCE, "huge"), query("e2", "𠀀", "beyond_bmp")])
    params = write_params(tmp_path / "params.yaml", {"dataset": str(dataset), "base_model": str(TINY_MODEL),
                                                     "finetune.train_group_size": 2})
    prepared, stats = tmp_path / "prepared", tmp_path / "prepare.json"
    stage("prepare", dataset, prepared, "--params", params, "--stats", stats)
    counts = json.loads(stats.read_text())
    assert counts["corpus_documents_over_1m_characters"] == 1
    assert counts["corpus_longest_document_characters"] == HUGE_CHARACTERS

    embeddings = tmp_path / "embeddings"
    stage("embed", TINY_MODEL, dataset, embeddings, "--params", params)
    tokens = len(huge)  # one token a character: each is in the vocabulary alone, or becomes one [UNK]
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    head = huge[:20_000] + END_SENTENCE
    assert len(tokenizer(head, add_special_tokens=False)["input_ids"]) == len(head)
    window, overlap = 512 - 2, 64  # passage_max_len less [CLS] and [SEP]; long_documents.overlap
    expected = 1 + math.ceil((tokens - window) / (window - overlap))
    docids = (embeddings / "docids.txt").read_text(encoding="utf-8").splitlines()
    owners = np.load(embeddings / "passage_doc.npy")
    assert int((owners == docids.index("huge")).sum()) == expected
    assert np.load(embeddings / "passages.npy").shape[0] == len(owners)

    out, metrics = tmp_path / "bm25", tmp_path / "metrics"
    stage("evaluate_bm25", dataset, prepared, out, metrics, "--params", params)
    run = {}
    for line in (out / "test" / "run.trec").read_text().splitlines():
        qid, _, docid, rank, *_ = line.split()
        if rank == "1":
            run[qid] = docid
    assert run == {"e1": "huge", "e2": "beyond_bmp"}
