"""The report's HTML page: which queries it shows, what it marks, and the passages it quotes."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from zh_retrieval.reporting.page import System, differing_queries, needed_passages, render_page, summary_rows
from zh_retrieval.retrieval.matches import best_passages, read_matched, write_matched
from zh_retrieval.retrieval.search import maxp_search


def test_best_passage_is_the_one_maxp_ranked_the_document_by(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    passage_doc = np.array([0, 0, 0, 1, 2, 2])
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    scores, rows = maxp_search(vectors, passage_doc, queries, top_k=3)
    best = best_passages(vectors, passage_doc, queries, rows)
    starts = [0, 3, 4]
    for n in range(3):
        for j, row in enumerate(rows[n]):
            # The matched passage's score is the document's MaxP score, and it lies within the document.
            assert passage_doc[starts[row] + best[n, j]] == row
            assert np.isclose(vectors[starts[row] + best[n, j]] @ queries[n], scores[n, j], atol=1e-6)
    write_matched(tmp_path / "matched.tsv", ["a", "b", "c"], ["d0", "d1", "d2"], rows, best)
    matched = read_matched(tmp_path / "matched.tsv")
    assert len(matched) == 9 and matched[("a", f"d{rows[0, 0]}")] == best[0, 0]


def test_the_queries_shown_are_those_the_systems_disagree_on_most() -> None:
    systems = [System("a", {}, {"q1": 0.0, "q2": 1.0, "q3": 0.5, "q4": 0.2}, None),
               System("b", {}, {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 0.7}, None)]
    assert differing_queries(systems, ["q1", "q2", "q3", "q4"], 3) == ["q1", "q3", "q4"]
    # q3 and q4 both spread 0.5 and disagree alike: the tie is broken by query id, whatever the order given.
    assert differing_queries(systems, ["q4", "q3", "q2", "q1"], 2) == ["q1", "q3"]
    # With a third system, q4's scores spread as far as q3's but disagree more: q4 comes first.
    systems.append(System("c", {}, {"q1": 0.5, "q2": 1.0, "q3": 0.25, "q4": 0.2}, None))
    assert differing_queries(systems, ["q3", "q4"], 2) == ["q4", "q3"]


class _Collect(HTMLParser):
    """The page's tags with their attributes, and every text node; fails on what the parser cannot read."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page_for_two_systems() -> str:
    documents = {"d1": ["d1 第一段", "d1 第二段 匹配"], "d2": ["d2 唯一段 <b>"], "d3": ["d3 一", "d3 二", "d3 三"]}
    base = System("base model, MaxP", {"q": {"d2": 0.9, "d1": 0.8, "d3": 0.1}}, {"q": 0.5},
                  {("q", "d1"): 1, ("q", "d2"): 0, ("q", "d3"): 2})
    truncated = System("fine-tuned", {"q": {"d1": 0.7, "d3": 0.6}}, {"q": 1.0}, None)
    rows = summary_rows({"test": {"base": {"ndcg_at_10": 0.25}}, "dev": {"base": {"ndcg_at_10": 0.5}}},
                        [("base", "base model"), ("bm25", "BM25")], ["ndcg_at_10"])
    assert rows == [("base model", ["0.2500", "0.5000"])]  # BM25 absent: no row
    return render_page("Results", rows, ["ndcg@10 (test)", "ndcg@10 (dev)"], [base, truncated], ["q"],
                       {"q": "如何 <script>alert(1)</script> 查询"}, {"q": {"d1": 1}}, {"q": "later"},
                       lambda docid, i: (documents[docid][i], len(documents[docid])), top=2, notes=["a note"])


def test_page_marks_the_relevant_document_and_quotes_the_matched_passage() -> None:
    page = page_for_two_systems()
    parsed = _Collect()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert "<script>" not in page and "如何 <script>alert(1)</script> 查询" in text  # escaped, shown as text
    assert "d2 唯一段 <b>" in text and "<b>d2" not in page
    # d1 is relevant: its list item is marked in both columns; d2 is not.
    items = [attrs.get("class") for tag, attrs in parsed.tags if tag == "li"]
    assert items == [None, "rel", "rel", None]  # base: d2, d1; fine-tuned: d1, d3 (top 2 each)
    # The base model matched d1's second passage: that passage is quoted, with its place; the truncated run
    # quotes the document's start.
    assert "passage 2/2" in text and "d1 第二段 匹配" in text and "document (truncated)" in text
    assert "d3 三" not in text  # d3 is base's third: beyond the top 2
    assert "first relevant at rank 2" in text and "first relevant at rank 1" in text
    assert "evidence in a later passage" in text and "a note" in text
    # One self-contained file: nothing fetched from anywhere.
    assert not [a for _, attrs in parsed.tags for k, a in attrs.items() if k in ("src", "href")]
    assert re.search(r"<table class=summary>.*0\.2500.*0\.5000", page)


def test_the_documents_to_cut_are_those_shown() -> None:
    base = System("b", {"q": {"d1": 0.9, "d2": 0.8, "d3": 0.1}, "other": {"d4": 1.0}}, {}, None)
    assert needed_passages([base], ["q"], 2) == {"d1", "d2"}
