"""Cutting documents into the passages a 512-token model sees: tokenizer only, no model, no torch.

Shared by `embed` (MaxP's passages) and `prepare` (whether a query's evidence lies in the first
passage, the one truncation keeps), so the two agree on where a passage ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only named in annotations: a cut worker process need not import transformers
    from transformers import PreTrainedTokenizerBase


def _token_offsets(tokenizer: PreTrainedTokenizerBase, text: str) -> list[tuple[int, int]]:
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                     verbose=False)["offset_mapping"]


def first_passage_end(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> int:
    """Character offset where the text's first passage ends: what truncation at `max_length` tokens keeps."""
    window = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    offsets = _token_offsets(tokenizer, text)
    return len(text) if len(offsets) <= window else offsets[window - 1][1]


SPLIT_BATCH = 256  # texts per tokenizer call: it runs a batch on every core; offsets of 8,192 long texts take GBs


def split_into_passages(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int, overlap: int) -> list[str]:
    """Cut a text into overlapping pieces that each fit the model at `max_length` tokens (specials included).

    Windows are cut on token boundaries and mapped back to character spans, so each passage is
    plain text that any later step encodes like a document; the first passage is what truncation
    would have kept.
    """
    return split_many(tokenizer, [text], max_length, overlap)[0]


def split_many(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, overlap: int
               ) -> list[list[str]]:
    """`split_into_passages` of each text, tokenized in batches: the fast tokenizer spreads a batch
    over every core, where one text at a time keeps one core busy (docs/speed-and-memory.md)."""
    window = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if window <= overlap:
        raise ValueError(f"overlap {overlap} must be smaller than the {window}-token window")
    passages: list[list[str]] = []
    for start in range(0, len(texts), SPLIT_BATCH):
        batch = list(texts[start : start + SPLIT_BATCH])
        offsets = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                            verbose=False)["offset_mapping"]
        passages.extend(_cut(text, text_offsets, window, overlap) for text, text_offsets in zip(batch, offsets))
    return passages


def _cut(text: str, offsets: list[tuple[int, int]], window: int, overlap: int) -> list[str]:
    return [text[start:end] for start, end in window_spans(offsets, len(text), window, overlap)]


def window_ranges(tokens: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """The token ranges [start, end) of a text's passages: windows of `window` tokens, `overlap` shared by
    neighbours; one range of everything where the text fits one window."""
    if tokens <= window:
        return [(0, tokens)]
    ranges = []
    for start in range(0, tokens, window - overlap):
        end = min(start + window, tokens)
        ranges.append((start, end))
        if end == tokens:
            break
    return ranges


def window_spans(offsets: Sequence[tuple[int, int]], text_length: int, window: int, overlap: int
                 ) -> list[tuple[int, int]]:
    """The character spans of a text's passages (`window_ranges`), from the tokens' character offsets; the whole
    text where it fits one window."""
    if len(offsets) <= window:
        return [(0, text_length)]
    return [(offsets[start][0], offsets[end - 1][1]) for start, end in window_ranges(len(offsets), window, overlap)]
