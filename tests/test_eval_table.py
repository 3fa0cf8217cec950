"""Experiment rows as a display table: rounded numbers, intervals as numbers, a compact view and the full one."""

import json

import pytest

from var_core.eval.table import display_table, label, rounded
from var_core.shipped import shipped

POPE = json.loads((shipped("results") / "pope" / "summary.json").read_text())["rows"]  # the committed full run


def test_numbers_are_rounded_to_three_significant_digits():
    assert rounded(0.9570552147239264) == 0.957 and rounded(0.018540194265878114) == 0.0185
    assert rounded(float("nan")) is None and rounded(1000) == 1000 and rounded("VAR on") == "VAR on"


def test_the_compact_view_keeps_the_columns_that_matter_with_intervals_as_numbers():
    table = display_table(POPE)
    assert list(table.columns) == ["condition", "n", "accuracy", "f1", "yes ratio", "accuracy 95% CI",
                                   "changed vs VAR off", "Δ accuracy vs VAR off, 95% CI"]
    on = table.iloc[1].to_dict()
    assert on["accuracy"] == 0.945 and on["accuracy 95% CI"] == "0.929 – 0.958"
    assert on["Δ accuracy vs VAR off, 95% CI"] == "-0.009 – 0.004"
    assert table.iloc[0]["Δ accuracy vs VAR off, 95% CI"] is None  # the reference row has no difference


def test_the_full_view_keeps_every_column_with_numeric_interval_bounds():
    table = display_table(POPE, compact=False)
    assert len(table.columns) == len(POPE[1]) + 4  # four intervals, each as low and high
    assert table.iloc[0][["accuracy 95% CI low", "accuracy 95% CI high"]].tolist() == [0.931, 0.959]
    assert table.iloc[0]["precision"] == 0.957 and table.iloc[0]["tp"] == 468
    for column in table.columns:
        assert all(value is None or not isinstance(value, (list, str)) or column == "condition"
                   for value in table[column])


@pytest.mark.parametrize("column, text", [("yes_ratio", "yes ratio"), ("f1_ci95", "f1 95% CI"),
                                          ("accuracy_minus_no_mask_ci95", "Δ accuracy vs no mask, 95% CI")])
def test_labels(column, text):
    assert label(column) == text


def test_rows_of_other_shapes_lead_with_what_they_are():
    rows = [{"mean_jaccard": 0.60912, "set": "visual sinks", "pairs": 190, "max_abs_delta_phi": float("nan")}]
    table = display_table(rows)
    assert list(table.columns) == ["set", "mean jaccard", "pairs"]  # an empty column is left out
    assert table.iloc[0].tolist() == ["visual sinks", 0.609, 190]
