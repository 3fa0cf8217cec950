"""Experiment rows (quick or full runs) as a table a person reads: numbers to 3 significant digits, intervals as
numbers, and a compact view of the columns that matter (the full view keeps every column, for a CSV)."""

from __future__ import annotations

import math
import numbers

# Columns the compact view leaves out: the confusion counts and the measures they give, and the checks that only
# matter when something went wrong (unparsed answers, images without visual sinks, runs where VAR moved nothing).
DETAIL = ("tp", "fp", "tn", "fn", "precision", "recall", "unparsed", "images_with_visual_sinks", "var_inert",
          "samples_masked", "f1_ci95", "f1_minus_VAR_off_ci95", "f1_minus_no_mask_ci95", "f1_std",
          "agreement_with_no_mask_std")
LEADING = ("condition", "tokens", "set", "comparison", "p", "rho", "tau", "n")  # what a row is, before its numbers


def rounded(value):
    """A float to 3 significant digits (0.9570552 → 0.957, 0.0185402 → 0.0185), NaN/inf/None → None, else as is."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return float(f"{value:.3g}") if math.isfinite(value) else None
    return value


def is_interval(value) -> bool:
    """A [low, high] pair of numbers, as the rows keep 95 % intervals."""
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


def label(column: str) -> str:
    """A column name for people: 'accuracy_minus_VAR_off_ci95' → 'Δ accuracy vs VAR off, 95% CI'."""
    name, interval = (column[:-5], True) if column.endswith("_ci95") else (column, False)
    if "_minus_" in name:
        measure, reference = name.split("_minus_", 1)
        name = f"Δ {measure} vs {reference}"
    name = name.replace("_", " ")
    return f"{name}{',' if name.startswith('Δ') else ''} 95% CI" if interval else name


def cells(row: dict, compact: bool) -> dict:
    """One row's display cells, by label: numbers rounded; an interval as one 'low – high' cell when `compact`, else
    as two numeric columns '… low' and '… high'."""
    shown = {}
    for column, value in row.items():
        if compact and column in DETAIL:
            continue
        if is_interval(value) or column.endswith("_ci95"):
            low, high = map(rounded, value) if is_interval(value) else (None, None)
            if compact:
                shown[label(column)] = None if None in (low, high) else f"{low:g} – {high:g}"
            else:
                shown[f"{label(column)} low"], shown[f"{label(column)} high"] = low, high
        else:
            shown[label(column)] = rounded(value)
    return shown


def display_table(rows: list[dict], compact: bool = True):
    """Experiment rows → pandas DataFrame for display: `compact` drops the DETAIL columns and writes intervals as
    'low – high'; compact=False keeps every column with intervals as numeric low/high columns (for a CSV). What a
    row is (LEADING) comes first; columns empty in every row are left out; missing cells are None (blank). pandas
    comes with the app's extra (Gradio)."""
    import pandas as pd

    table = [cells(row, compact) for row in rows]
    names = dict.fromkeys([*map(label, LEADING), *(key for row in table for key in row)])
    columns = [name for name in names if any(row.get(name) is not None for row in table)]
    return pd.DataFrame([[row.get(name) for name in columns] for row in table], columns=columns, dtype=object)
