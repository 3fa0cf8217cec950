"""View 8: word-level difference between the baseline and the VAR answer, as `gr.HighlightedText` pairs."""

from __future__ import annotations

import difflib
import re

DIFF_COLORS = {"removed": "#D55E00", "added": "#0072B2"}  # color_map for gr.HighlightedText (Okabe–Ito)


def _words(text: str) -> list[str]:
    """Words with their trailing whitespace, so joined entries reproduce the text."""
    return re.findall(r"\S+\s*", text)


def _merge(pairs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """Join neighbouring entries with the same label."""
    merged: list[tuple[str, str | None]] = []
    for text, label in pairs:
        if merged and merged[-1][1] == label:
            merged[-1] = (merged[-1][0] + text, label)
        else:
            merged.append((text, label))
    return merged


def answer_diff(baseline: str, var: str) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
    """(baseline side, VAR side): words only in the baseline are labelled "removed", words only in the VAR
    answer "added", shared words None. Words compare case-sensitively, ignoring surrounding whitespace."""
    old, new = _words(baseline), _words(var)
    matcher = difflib.SequenceMatcher(a=[w.strip() for w in old], b=[w.strip() for w in new], autojunk=False)
    left: list[tuple[str, str | None]] = []
    right: list[tuple[str, str | None]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        left += [(word, None if tag == "equal" else "removed") for word in old[i1:i2]]
        right += [(word, None if tag == "equal" else "added") for word in new[j1:j2]]
    return _merge(left), _merge(right)
