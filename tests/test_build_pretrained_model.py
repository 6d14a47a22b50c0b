"""The pretrained demo embedder's builder: its reading of the Debian texts and its vocabulary."""

from __future__ import annotations

import random
import re
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import build_pretrained_model as builder  # noqa: E402


def test_wrapped_chinese_lines_join_without_a_space_and_latin_ones_with_one() -> None:
    lines = ["    每个目录都有一个名字，它可以包含任意", "    字母。Debian GNU/Linux", "    is free"]
    assert builder.join_wrapped(lines) == "每个目录都有一个名字，它可以包含任意字母。Debian GNU/Linux is free"


def test_numbered_sections_rejoin_wrapped_titles_and_keep_bodies() -> None:
    lines = ["1.5. Debian GNU/Linux 与其他发行版的区别是什么？为什么我应该选", "择 Debian？", "",
             "    以下关键特性使得 Debian 与其他发行", "    版不一样。", "", "1.6. 空的", "",
             "1.7. 第三节", "", "    第三节的正文有中文。"]
    sections = builder.numbered_sections(lines, re.compile(r"^\d+(?:\.\d+)+\. +(.+)$"))
    assert sections == [("Debian GNU/Linux 与其他发行版的区别是什么？为什么我应该选择 Debian？",
                         "以下关键特性使得 Debian 与其他发行版不一样。"), ("第三节", "第三节的正文有中文。")]


def test_passages_fit_the_model_and_cloze_queries_come_from_them() -> None:
    text = "。".join(f"第{i}句话讲的是一个不同的系统管理主题" for i in range(200)) + "。"
    rng = random.Random(0)
    pieces = builder.split_passages(text, rng)
    assert "".join(pieces) == text[: len("".join(pieces))] and max(map(len, pieces)) <= builder.MAX_TOKENS - 2
    for piece in pieces[:20]:
        sentence, passage = builder.inverse_cloze(piece, rng)
        assert sentence in piece and (passage == piece or sentence not in passage)


def test_vocabulary_covers_gb2312_and_every_character_of_the_text() -> None:
    assert len(builder.gb2312_characters()) == 6763 + 682
    vocab = builder.vocabulary(["繁體字與𠀀罕见字，ÅΩ"])
    tokens = set(vocab)
    assert {"的", "龄", "繁", "體", "ω", "a", "##a"} <= tokens and "##的" not in tokens
    assert len(vocab) == len(tokens), "no duplicates"
