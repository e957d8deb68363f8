"""Caption choice: the short caption with probability p, else a whole-sentence prefix of the long one."""

from __future__ import annotations

import random
import re

# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by whitespace or the end.
_SENTENCE_END = re.compile(r"[.!?][\"'\)\]]*(?=\s|$)")


def sentence_ends(text: str) -> list[int]:
    """Offsets just past each sentence of ``text``; the last one is the end of the stripped text."""
    stripped_end = len(text.rstrip())
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, stripped_end)]
    if not ends or ends[-1] < stripped_end:
        ends.append(stripped_end)
    return ends


def sentence_prefix(text: str, rng: random.Random) -> str:
    """The first k sentences of ``text``, k uniform in 1..(number of sentences)."""
    ends = sentence_ends(text)
    return text[: ends[rng.randrange(len(ends))]].strip()


def choose_caption(long_caption: str, short_caption: str | None, short_prob: float, rng: random.Random) -> str:
    if short_caption and rng.random() < short_prob:
        return short_caption
    return sentence_prefix(long_caption, rng)
