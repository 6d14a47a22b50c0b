"""Build the bundled general-domain retrieval set (MLDR layout) from Debian's `libreoffice-help-zh-cn`.

    apt-get download libreoffice-help-zh-cn      # or pass any libreoffice-help-zh-cn_*.deb
    python scripts/build_general_set.py libreoffice-help-zh-cn_*.deb data/general

The forgetting check asks whether fine-tuning on the domain (Linux manual pages) cost retrieval
ability elsewhere, so this set must share no text with the domain sample nor with the demo base
model's pretraining text (Debian Reference, the Debian FAQ and fortunes-zh; see
models/zh-mini-embedder/README.md). LibreOffice's help is neither: an office suite's manual,
written for its users.

Each help page with enough Chinese text becomes a document: its title and its text, less the
page's first paragraph. That first paragraph's first sentence, which says what the page is for
(「导航」栏包含用于编辑数据库表或控制数据视图的各种图标), becomes a query whose one relevant document
is the page. A seeded sample of the queries forms test.jsonl, then a second one of the pages left
forms dev.jsonl (where choices such as the merge weight are read); every sampled page stays in the
corpus. The text is MPL-2.0 (data/general/LICENSE); the output is deterministic for a given .deb
and seed.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lxml import html as lxml_html

from zh_retrieval.core.files import write_jsonl

logger = logging.getLogger(__name__)

HELP_ROOT = "usr/share/libreoffice/help/zh-CN/text"
CJK = re.compile(r"[\u4e00-\u9fff]")
FIRST_SENTENCE = re.compile(r"^[^。！？]*[。！？]")
QUERY_MIN_CJK = 8
QUERY_MAX_CHARS = 60
QUERY_MIN_CJK_SHARE = 0.6
DOCUMENT_MIN_CJK = 150
LICENSE_TEXT = """The documents and queries in this directory are extracted from LibreOffice's help
(Debian package libreoffice-help-zh-cn {version}), by scripts/build_general_set.py.

LibreOffice help: Copyright 2000, 2010 Oracle and/or its affiliates; Copyright (c) 2000, 2010
LibreOffice contributors and/or their affiliates. Licensed under the Mozilla Public License,
version 2.0 (https://mozilla.org/MPL/2.0/); some files include material under the Apache
License 2.0. The package's full copyright file follows.

{copyright}"""


@dataclass(frozen=True)
class Page:
    docid: str  # the page's path under help/zh-CN/text, without .html
    title: str
    lead: str  # the first sentence of the first paragraph: the query
    text: str  # title and body without the first paragraph: the document


def cjk_count(text: str) -> int:
    return len(CJK.findall(text))


def block_text(element) -> str:
    return re.sub(r"\s+", " ", element.text_content()).strip()


def parse_page(path: Path, docid: str) -> Page | None:
    """The page as (title, lead sentence, rest), or None when it has no usable lead or too little Chinese."""
    tree = lxml_html.fromstring(path.read_bytes())
    area = tree.xpath('//div[@id="DisplayArea"]')
    titles = area[0].xpath(".//h1") if area else []
    if not titles:
        return None
    paragraphs = area[0].xpath('.//p[@class="paragraph"]')
    if not paragraphs:
        return None
    lead_paragraph = paragraphs[0]
    match = FIRST_SENTENCE.match(block_text(lead_paragraph))
    if not match:
        return None
    lead = match.group(0).rstrip("。！？")
    chinese = cjk_count(lead)
    if chinese < QUERY_MIN_CJK or len(lead) > QUERY_MAX_CHARS or chinese / len(lead) < QUERY_MIN_CJK_SHARE:
        return None
    lead_paragraph.getparent().remove(lead_paragraph)
    for debug in area[0].xpath('.//*[contains(@class, "debug")]'):
        debug.getparent().remove(debug)
    blocks = [block_text(e) for e in area[0].xpath(".//h1|.//h2|.//h3|.//p|.//td|.//li")]
    lines = []
    for block in blocks:
        if block and block not in lines[-1:]:
            lines.append(block)
    text = "\n".join(lines)
    text = re.sub(r"\n?Help content debug info:.*$", "", text, flags=re.S)
    if cjk_count(text) < DOCUMENT_MIN_CJK or lead in text:
        return None
    return Page(docid, block_text(titles[0]), lead, text)


def read_pages(root: Path) -> list[Page]:
    pages = []
    for path in sorted((root / HELP_ROOT).rglob("*.html")):
        page = parse_page(path, str(path.relative_to(root / HELP_ROOT).with_suffix("")))
        if page is not None:
            pages.append(page)
    # A query must name one page: leads or texts that recur (dialog pages sharing a sentence) go.
    lead_counts, text_counts = {}, {}
    for page in pages:
        lead_counts[page.lead] = lead_counts.get(page.lead, 0) + 1
        text_counts[page.text] = text_counts.get(page.text, 0) + 1
    unique = [p for p in pages if lead_counts[p.lead] == 1 and text_counts[p.text] == 1]
    # ...and must not appear verbatim in another page, which would then be as relevant as its own.
    corpus_text = "\n\x00".join(p.text for p in unique)
    return [p for p in unique if corpus_text.count(p.lead) == 0]


def package_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                          text=True).stdout.strip()


def build(deb: Path, out_dir: Path, test_queries: int, dev_queries: int, corpus_size: int, seed: int
          ) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        pages = read_pages(Path(tmp))
        copyright_text = (Path(tmp) / "usr/share/doc/libreoffice-help-zh-cn/copyright").read_text(encoding="utf-8")
    rng = random.Random(seed)
    corpus = sorted(rng.sample(pages, min(corpus_size, len(pages))), key=lambda p: p.docid)
    test = sorted(rng.sample(corpus, min(test_queries, len(corpus))), key=lambda p: p.docid)
    # Drawn after test with the same generator, so adding dev left the corpus and test unchanged.
    unused = [page for page in corpus if page not in test]
    dev = sorted(rng.sample(unused, min(dev_queries, len(unused))), key=lambda p: p.docid)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "corpus.jsonl", [{"docid": page.docid, "text": page.text} for page in corpus])
    for split, pages_of_split in (("test", test), ("dev", dev)):
        write_jsonl(out_dir / f"{split}.jsonl", [
            {"query_id": f"q-{page.docid}", "query": page.lead,
             "positive_passages": [{"docid": page.docid, "text": page.text}], "negative_passages": []}
            for page in pages_of_split
        ])
    (out_dir / "LICENSE").write_text(LICENSE_TEXT.format(version=package_version(deb), copyright=copyright_text),
                                     encoding="utf-8")
    counts = {"pages_qualifying": len(pages), "corpus": len(corpus), "test_queries": len(test),
              "dev_queries": len(dev)}
    logger.info("general set %s: %s", out_dir, counts)
    return counts


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("deb", type=Path, help="libreoffice-help-zh-cn_*.deb")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--test-queries", type=int, default=200)
    parser.add_argument("--dev-queries", type=int, default=200)
    parser.add_argument("--corpus-size", type=int, default=600)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    build(args.deb, args.out_dir, args.test_queries, args.dev_queries, args.corpus_size, args.seed)


if __name__ == "__main__":
    main()
