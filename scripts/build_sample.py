"""Build the bundled Chinese retrieval sample (MLDR layout) from Debian's `manpages-zh`.

    apt-get download manpages-zh          # or pass any manpages-zh_*.deb
    python scripts/build_sample.py manpages-zh_1.6.4.0-1_all.deb data/sample

Each zh_CN manual page becomes a document (the page's text with the NAME section and
the troff markup removed); the Chinese description on its NAME line (`ls \\- 列出目录内容`)
becomes a query whose one relevant document is that page. Long pages, short queries and
a lexical gap between them make a small but real long-document retrieval task, in the
same files and fields as MLDR (`corpus.jsonl`, `{train,dev,test}.jsonl`).

NAME queries match a page's opening, so on their own they cannot tell truncation from MaxP.
Every page longer than 512 tokens also gets a *deep* query (`q-deep-<docid>`): one sentence
of the page, drawn with the seed from those that start beyond its first 512 tokens (by the
demo model's tokenizer), hold 10 or more Chinese characters and occur in no other page. A
deep query goes to its page's split. Every query row records `evidence_offset`, the character
offset in the page's text where its evidence starts: the sentence's for a deep query, 0 for a
NAME query (the NAME line summarises the page, whose opening says the same). The query is the
sentence verbatim, so a lexical matcher such as BM25 finds it easily wherever it lies; what
it tests is whether a dense model looks past the first passage.

The text is GFDL-1.2+ (see data/sample/LICENSE); the output is deterministic for a given
.deb and seed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import random
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]

CJK = re.compile(r"[\u4e00-\u9fff]")
SENTENCE = re.compile(r"[^。；！？\n]+[。；！？]?")  # a sentence, or a line without a full stop
DEEP_QUERY_MIN_CJK = 10
DEEP_QUERY_MAX_CHARS = 40
FIRST_PASSAGE_TOKENS = 510  # 512 minus [CLS] and [SEP]
NAME_DASH = re.compile(r"\s-+\s*")  # `ls \- 列出...`; the space keeps `apt-get` whole
NAME_HEADINGS = ("NAME", "名称", "名字", "名称 NAME", "NAME 名称")
# Macros whose arguments are running text (fonts, headings, list tags); every other
# request line (.TH, .PP, .de, .if, .nr, ...) carries layout only and is dropped.
TEXT_MACROS = {
    "B", "I", "R", "BR", "RB", "BI", "IB", "IR", "RI", "SM", "SB", "SH", "SS", "IP", "TP", "UR", "OP",
}
ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes: \fB \fI \fP \f(CW
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(\(..|\[[^\]]*\]|.)"), ""),  # string registers
    (re.compile(r"\\\((em|en|hy)"), "-"),
    (re.compile(r"\\\((lq|rq|dq)"), '"'),
    (re.compile(r"\\\((bu|co|rg|tm|..)"), ""),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
    (re.compile(r"\\[&,/|^%:]"), ""),
    (re.compile(r"\\ "), " "),
    (re.compile(r"\\c$"), ""),
    (re.compile(r"\\[\"#].*$"), ""),  # trailing comments
]


@dataclass(frozen=True)
class Page:
    docid: str
    description: str  # the NAME line's text after `\-`
    text: str  # the page without its NAME section


def strip_escapes(line: str) -> str:
    for pattern, replacement in ESCAPES:
        line = pattern.sub(replacement, line)
    return line.replace("\\\\", "\\")


def macro_arguments(line: str) -> str:
    """Text of a macro line's arguments, with troff's double quotes removed."""
    parts = line.split(None, 1)
    return parts[1].replace('"', "") if len(parts) > 1 else ""


def parse_page(docid: str, source: str) -> Page | None:
    """Split one troff page into its NAME description and the rest of its text."""
    lines = source.splitlines()
    text_lines: list[str] = []
    description: str | None = None
    in_name = False
    in_macro_definition = False
    for raw in lines:
        if in_macro_definition:
            in_macro_definition = raw.strip() != ".."
            continue
        if raw.startswith((".de", ".am", ".ig")):
            in_macro_definition = True
            continue
        if raw.startswith((".so ", "'so ")):
            return None  # an alias page that includes another page
        if raw.startswith((".", "'")):
            macro = raw[1:].split(None, 1)[0] if raw[1:].strip() else ""
            if macro in ("SH", "SS"):
                heading = strip_escapes(macro_arguments(raw)).strip()
                in_name = macro == "SH" and (
                    heading in NAME_HEADINGS or heading.upper().startswith("NAME") or heading.startswith("名称")
                )
                if not in_name:
                    text_lines.append(heading)
                continue
            if macro not in TEXT_MACROS or in_name:
                continue
            line = strip_escapes(macro_arguments(raw))
        else:
            line = strip_escapes(raw)
        line = line.strip()
        if not line:
            continue
        if in_name:
            dash = NAME_DASH.search(f" {line}")
            if description is None and dash:
                description = f" {line}"[dash.end() :]
            elif description is not None:
                description = f"{description} {line}"
            continue
        text_lines.append(line)
    text = "\n".join(text_lines).strip()
    if description is None or not text:
        return None
    return Page(docid=docid, description=re.sub(r"\s+", " ", description).strip(), text=text)


def read_pages(man_root: Path) -> list[Page]:
    pages = []
    for path in sorted(man_root.glob("man*/*.gz")):
        if path.is_symlink():
            continue
        source = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        docid = path.name.removesuffix(".gz")  # e.g. "ls.1", unique across sections
        page = parse_page(docid, source)
        if page is not None:
            pages.append(page)
    return pages


def deduplicate(pages: list[Page]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Corpus without twin documents, and query text => docids relevant to it.

    Alias pages (gview and vim) share one text: keeping both would make the qrels punish
    a model for ranking the twin first, so the first docid in sorted order stands for all.
    Two pages with one description make one query with both pages relevant.
    """
    corpus: dict[str, str] = {}  # docid => text
    seen_text: dict[str, str] = {}  # text hash => docid kept
    relevant: dict[str, list[str]] = {}  # query text => docids
    for page in pages:
        digest = hashlib.sha256(page.text.encode()).hexdigest()
        docid = seen_text.setdefault(digest, page.docid)
        corpus.setdefault(docid, page.text)
        if CJK.search(page.description):
            docs = relevant.setdefault(page.description, [])
            if docid not in docs:
                docs.append(docid)
    return corpus, relevant


def deep_query_candidates(text: str, all_text: str, boundary: int) -> list[tuple[int, str]]:
    """(offset, sentence) for each sentence of the page past `boundary` that could be a deep query."""
    candidates = []
    for match in SENTENCE.finditer(text):
        sentence = match.group().strip(" \t,，:：")
        if match.start() < boundary or not sentence:
            continue
        chinese = len(CJK.findall(sentence))
        if (chinese >= DEEP_QUERY_MIN_CJK and len(sentence) <= DEEP_QUERY_MAX_CHARS
                and chinese >= 0.7 * len(sentence) and all_text.count(sentence) == 1):
            candidates.append((text.index(sentence, match.start()), sentence.rstrip("。；！？")))
    return candidates


def deep_queries(corpus: dict[str, str], docids: list[str], tokenizer_dir: Path, seed: int) -> list[dict]:
    """One deep query per page longer than the first passage, where the page has a candidate sentence."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    all_text = "\x00".join(corpus.values())  # a separator no sentence holds: counts never span two pages
    rows = []
    for docid in docids:
        text = corpus[docid]
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                            verbose=False)["offset_mapping"]
        if len(offsets) <= FIRST_PASSAGE_TOKENS:
            continue
        candidates = deep_query_candidates(text, all_text, offsets[FIRST_PASSAGE_TOKENS][0])
        if not candidates:
            continue
        offset, sentence = random.Random(f"{seed}:{docid}").choice(candidates)
        rows.append({"query_id": f"q-deep-{docid}", "query": sentence,
                     "positive_passages": [{"docid": docid, "text": text}], "negative_passages": [],
                     "evidence_offset": offset})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_sample(deb: Path, out_dir: Path, dev_size: int, test_size: int, seed: int, tokenizer_dir: Path
                 ) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        pages = read_pages(Path(tmp) / "usr/share/man/zh_CN")
    corpus, relevant = deduplicate(pages)
    queries = [
        {
            "query_id": f"q-{docids[0]}",
            "query": text,
            "positive_passages": [{"docid": d, "text": corpus[d]} for d in docids],
            "negative_passages": [],
            "evidence_offset": 0,
        }
        for text, docids in sorted(relevant.items(), key=lambda item: item[1][0])
    ]
    random.Random(seed).shuffle(queries)
    splits = {
        "test": queries[:test_size],
        "dev": queries[test_size : test_size + dev_size],
        "train": queries[test_size + dev_size :],
    }
    split_of = {p["docid"]: split for split, rows in splits.items() for row in rows for p in row["positive_passages"]}
    for row in deep_queries(corpus, sorted(split_of), tokenizer_dir, seed):
        splits[split_of[row["positive_passages"][0]["docid"]]].append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "corpus.jsonl", [{"docid": d, "text": t} for d, t in sorted(corpus.items())])
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", sorted(rows, key=lambda r: r["query_id"]))
    counts = {"pages": len(pages), "corpus": len(corpus), **{s: len(r) for s, r in splits.items()},
              "deep": sum(row["evidence_offset"] > 0 for rows in splits.values() for row in rows)}
    return counts


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("deb", type=Path, help="a manpages-zh_*.deb")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dev-size", type=int, default=50)
    parser.add_argument("--test-size", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "zh-mini-embedder",
                        help="whose tokens define the first 512 (default: the demo's base model)")
    args = parser.parse_args()
    counts = build_sample(args.deb, args.out_dir, args.dev_size, args.test_size, args.seed, args.tokenizer)
    logger.info("wrote %s: %s", args.out_dir, ", ".join(f"{k} {v:,}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
