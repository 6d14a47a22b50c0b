"""The report as a static HTML page: the results, and the queries where the models differ most, side by side.

For each of those queries (dev: where choices are read, so looking does not spend test) the page
shows the top documents of each system (base, fine-tuned, the first stage, reranked), marks the
relevant ones, and under each document the passage that system matched: the passage MaxP ranked
it by for an embedder, the one the reranker read for the first stage and the reranked run. One
file, no script, no fonts or styles from the network: it opens offline.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zh_retrieval.retrieval.metrics import Run, ranked

SNIPPET_CHARS = 150  # of each matched passage shown; the rest is one click away (<details>)


@dataclass(frozen=True)
class System:
    """One ranking shown on the page."""

    label: str
    run: Run
    ndcg_at_10: Mapping[str, float]  # query_id => its nDCG@10 in this run
    matched: Mapping[tuple[str, str], int] | None  # (query_id, docid) => passage index; None: no passages


EVIDENCE = {"first_passage": "the first passage", "later": "a later passage"}
PassageText = Callable[[str, int], tuple[str, int]]  # (docid, passage index) => (its text, passages in the doc)


def differing_queries(systems: Sequence[System], queries: Sequence[str], count: int) -> list[str]:
    """The `count` queries whose nDCG@10 spreads widest across the systems (max - min), widest first; among
    equal spreads, those where the systems disagree more overall (standard deviation), then by query id,
    so the page is the same for the same runs."""
    def disagreement(query_id: str) -> tuple[float, float, str]:
        values = np.array([s.ndcg_at_10.get(query_id, 0.0) for s in systems])
        return (-round(float(values.max() - values.min()), 9), -round(float(values.std()), 9), query_id)

    return sorted(queries, key=disagreement)[:count]


def needed_passages(systems: Sequence[System], query_ids: Sequence[str], top: int) -> set[str]:
    """The docids whose text the page shows."""
    return {docid for s in systems for q in query_ids for docid, _ in ranked(s.run.get(q, {}))[:top]}


def render_page(title: str, summary_rows: Sequence[tuple[str, Sequence[str]]], summary_header: Sequence[str],
                systems: Sequence[System], query_ids: Sequence[str], queries: Mapping[str, str],
                qrels: Mapping[str, Mapping[str, int]], groups: Mapping[str, str], passage_text: PassageText,
                top: int, notes: Sequence[str]) -> str:
    """The whole page as one HTML string."""
    parts = [_HEAD.format(title=html.escape(title)), f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p class=note>{html.escape(note)}</p>" for note in notes]
    parts.append(_table(summary_header, summary_rows))
    parts.append(f"<h2>The {len(query_ids)} dev queries where the systems differ most (nDCG@10, max − min)</h2>")
    parts.append("<p class=note>Each column is one system's top "
                 f"{top}; <span class=relmark>relevant</span> marks a relevant document. Under each document, the "
                 "passage that system matched (passage i/n of the document); click it for the whole passage.</p>")
    for query_id in query_ids:
        parts.append(_query_section(query_id, systems, queries, qrels, groups, passage_text, top))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _table(header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["", *header])
    body = "".join("<tr><th>" + html.escape(label) + "</th>" + "".join(f"<td>{html.escape(v)}</td>" for v in values)
                   + "</tr>" for label, values in rows)
    return f"<table class=summary><tr>{head}</tr>{body}</table>"


def _query_section(query_id: str, systems: Sequence[System], queries: Mapping[str, str],
                   qrels: Mapping[str, Mapping[str, int]], groups: Mapping[str, str], passage_text: PassageText,
                   top: int) -> str:
    relevant = {d for d, r in qrels.get(query_id, {}).items() if r > 0}
    scores = " · ".join(f"{html.escape(s.label)} {s.ndcg_at_10.get(query_id, 0.0):.2f}" for s in systems)
    where = EVIDENCE.get(groups.get(query_id, ""), "")
    evidence = f" · evidence in {where}" if where else ""
    out = [f"<section class=query id='{html.escape(query_id, quote=True)}'>",
           f"<h3>{html.escape(queries.get(query_id, ''))} <span class=qid>{html.escape(query_id)}</span></h3>",
           f"<p class=meta>relevant: {html.escape(', '.join(sorted(relevant)))}{evidence} · nDCG@10: {scores}</p>",
           "<div class=grid>"]
    for system in systems:
        ranking = ranked(system.run.get(query_id, {}))
        items = []
        for docid, score in ranking[:top]:
            mark = " class=rel" if docid in relevant else ""
            items.append(f"<li{mark}><span class=doc>{html.escape(docid)}</span> <span class=score>{score:.4f}</span>"
                         + _passage_html(system, query_id, docid, passage_text) + "</li>")
        first = next((rank for rank, (docid, _) in enumerate(ranking, 1) if docid in relevant), None)
        found = (f"first relevant at rank {first}" if first else f"no relevant document in its top {len(ranking)}")
        out.append(f"<div class=col><h4>{html.escape(system.label)}</h4><ol>{''.join(items)}</ol>"
                   f"<p class=where>{found}</p></div>")
    out.append("</div></section>")
    return "\n".join(out)


def _passage_html(system: System, query_id: str, docid: str, passage_text: PassageText) -> str:
    index = 0 if system.matched is None else system.matched.get((query_id, docid))
    if index is None:
        return "<div class=passage>(passage not recorded)</div>"
    text, count = passage_text(docid, index)
    label = "document (truncated)" if system.matched is None else f"passage {index + 1}/{count}"
    snippet = text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")
    return (f"<details class=passage><summary><b>{label}</b> {html.escape(snippet)}</summary>"
            f"{html.escape(text)}</details>")


def summary_rows(by_split: Mapping[str, Mapping[str, Any]], rows: Sequence[tuple[str, str]], columns: Sequence[str]
                 ) -> list[tuple[str, list[str]]]:
    """One row per system present on both splits: each column on test, then on dev."""
    result = []
    for stem, label in rows:
        if all(stem in by_split[split] for split in ("test", "dev")):
            result.append((label, [f"{by_split[split][stem][c]:.4f}" for split in ("test", "dev") for c in columns]))
    return result


_HEAD = """<!DOCTYPE html>
<html lang="zh"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.5em; }}
.note {{ color: #555; max-width: 70em; }}
table.summary {{ border-collapse: collapse; font-size: 0.9em; }}
table.summary td, table.summary th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }}
table.summary th:first-child {{ text-align: left; }}
section.query {{ border-top: 2px solid #888; margin-top: 1.2em; }}
h3 {{ font-size: 1.05em; margin-bottom: 0.2em; }} .qid {{ color: #888; font-weight: normal; font-size: 0.85em; }}
.meta {{ margin-top: 0; color: #444; font-size: 0.9em; }}
.grid {{ display: grid; grid-template-columns: repeat(4, 1fr); gap: 0.8em; }}
.col h4 {{ margin: 0.2em 0; font-size: 0.95em; }}
ol {{ padding-left: 1.6em; margin: 0; }} li {{ margin-bottom: 0.4em; font-size: 0.85em; }}
li.rel, .relmark {{ background: #d9f2d9; outline: 2px solid #3a3; }}
.doc {{ font-weight: bold; }} .score {{ color: #777; }}
.passage {{ color: #333; }} .passage summary {{ cursor: pointer; }}
.where {{ font-size: 0.8em; color: #666; }}
</style></head><body>"""
