"""Metrics of the experiments: yes/no parsing, POPE's confusion-matrix scores, 95 % intervals, set overlap, mean ± std."""

from __future__ import annotations

import itertools
import math
import random
import re

YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "true", "correct"})
NO_WORDS = frozenset({"no", "not", "nope", "none", "false", "incorrect", "nothing", "never"})
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def parse_yes_no(text: str | None) -> str | None:
    """"yes" / "no" from a generated answer, None when it says neither.

    The first yes-word or no-word decides ("Yes, there is…" → yes; "There is no cat." → no; "isn't" → no);
    case, punctuation and curly apostrophes do not matter.
    """
    if not text:
        return None
    for word in _WORD.findall(text.lower().replace("\u2019", "'")):
        if word in YES_WORDS:
            return "yes"
        if word in NO_WORDS or word.endswith("n't"):
            return "no"
    return None


def confusion(labels, predictions) -> dict[str, int]:
    """tp/fp/tn/fn with "yes" as the positive class; a prediction that is not "yes" (incl. None) counts as no."""
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for label, prediction in zip(labels, predictions, strict=True):
        if label not in ("yes", "no"):
            raise ValueError(f"label {label!r} must be 'yes' or 'no'")
        said_yes = prediction == "yes"
        key = ("tp" if said_yes else "fn") if label == "yes" else ("fp" if said_yes else "tn")
        counts[key] += 1
    return counts


def binary_metrics(labels, predictions) -> dict[str, float]:
    """POPE's scores: accuracy, precision, recall, F1 (positive = yes), yes-ratio, plus n, counts and unparsed.

    Empty denominators give 0. Unparsed answers (None) are counted as "no" and reported in `unparsed`.
    """
    labels, predictions = list(labels), list(predictions)
    c = confusion(labels, predictions)
    n = len(labels)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": n, **c, "accuracy": (c["tp"] + c["tn"]) / n if n else 0.0, "precision": precision,
            "recall": recall, "f1": f1, "yes_ratio": (c["tp"] + c["fp"]) / n if n else 0.0,
            "unparsed": sum(p is None for p in predictions)}


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion hits / n (sensible at 0 and n, unlike the normal approximation)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def bootstrap_interval(statistic, n: int, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of statistic(indices) over n paired samples (fixed seed: reproducible).
    For F1 and for differences between two conditions on the same questions (resample questions, not answers)."""
    if n == 0:
        return 0.0, 0.0
    rng = random.Random(seed)
    values = sorted(statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    return values[int(0.025 * resamples)], values[int(0.975 * resamples) - 1]


def jaccard(a, b) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1.0)."""
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def mean_pairwise_jaccard(sets) -> float:
    """Mean Jaccard over all unordered pairs; nan with fewer than two sets."""
    pairs = [jaccard(a, b) for a, b in itertools.combinations(list(sets), 2)]
    return sum(pairs) / len(pairs) if pairs else math.nan


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value, nan for none)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
