"""Every sub-command end to end (10 samples, tiny random LLaVA), resume, shard + merge = one run, quick API;
one quick run on the embedded default model."""

import csv
import json

import pytest
import torch
from matplotlib.figure import Figure

from var_core.eval.__main__ import main
from var_core.eval.quick import NAMES, run_quick

TINY = ["--tau", "2", "--no-bar"]  # the tiny model's φ range is small; τ = 2 gives it sinks (as tests/test_run)
SMALL = {"sweep": ["--ps", "0.4,0.8", "--rhos", "0.5"], "sinks": ["--n", "2"], "mask": ["--seeds", "0,1"]}
PLOTS = {"pope": 1, "ablate": 1, "sweep": 1, "mask": 2, "contribution": 3, "sinks": 3}
ROWS = {"pope": 2, "ablate": 4, "sweep": 3, "mask": 5, "contribution": 4, "sinks": 7}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Shared 2-core machine: one thread is several times faster than two fighting other jobs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def table(folder):
    with open(folder / "table.csv") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("command", list(PLOTS))
def test_subcommand_end_to_end(command, tiny_bundle, tmp_path):
    out = tmp_path / command
    argv = [command, "--n", "10", "--out", str(out), *TINY, *SMALL.get(command, [])]
    assert main(argv, bundle=tiny_bundle) == 0
    rows = table(out)
    assert len(rows) == ROWS[command]
    assert len(list(out.glob("*.png"))) == PLOTS[command]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["experiment"] == command and summary["meta"]["runs_from_cache"] == 0
    records = (out / "records.jsonl").read_text().splitlines()
    assert len(records) == summary["meta"]["samples_in_shard"] * len(summary["meta"]["conditions"])
    if command in ("pope", "ablate", "sweep", "mask"):
        assert all(row["n"] == "10" for row in rows[:ROWS[command] - (command == "mask")])
    # resumable: a second run reads every result from the cache and gives the same table
    main(argv, bundle=tiny_bundle)
    again = json.loads((out / "summary.json").read_text())["meta"]
    assert again["runs_computed"] == 0 and table(out) == rows


@pytest.mark.parametrize("command", ["pope", "mask"])
def test_shards_merged_equal_one_run(command, tiny_bundle, tmp_path):
    common = ["--n", "10", *TINY, *SMALL.get(command, [])]
    main([command, "--out", str(tmp_path / "one"), *common], bundle=tiny_bundle)
    for i in range(3):
        main([command, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/3", *common], bundle=tiny_bundle)
    main(["merge", "--out", str(tmp_path / "merged"), *(str(tmp_path / f"s{i}") for i in range(3))])
    assert table(tmp_path / "merged") == table(tmp_path / "one")
    shard_rows = table(tmp_path / "s0")
    assert shard_rows[0]["n"] != "10"  # a shard alone is only part of the data
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())["meta"]
    assert merged["merged_from"] == [[0, 3], [1, 3], [2, 3]] and "warning" not in merged


def test_merge_refuses_different_settings(tiny_bundle, tmp_path):
    main(["pope", "--n", "2", "--out", str(tmp_path / "a"), "--shard", "0/2", *TINY], bundle=tiny_bundle)
    main(["pope", "--n", "2", "--out", str(tmp_path / "b"), "--shard", "1/2", "--p", "0.9", *TINY],
         bundle=tiny_bundle)
    with pytest.raises(ValueError, match="shards differ in options"):
        main(["merge", "--out", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")])


def test_quick_api_reports_progress_and_returns_figures(tiny_bundle):
    calls = []
    rows, figures = run_quick("pope", n_samples=3, bundle=tiny_bundle, options={"tau": 2.0},
                              progress_callback=lambda done, total, message: calls.append((done, total)))
    assert [row["condition"] for row in rows] == ["VAR off", "VAR on"] and rows[0]["n"] == 3
    assert calls[-1] == (6, 6) and len(calls) == 6
    assert figures and all(isinstance(f, Figure) for f in figures)
    assert set(NAMES) == set(PLOTS)
    with pytest.raises(ValueError, match="quick versions exist for"):
        run_quick("chair", bundle=tiny_bundle)


@pytest.fixture(scope="module")
def default_bundle():
    from var_core.models.default import load_default_model
    return load_default_model()


def test_quick_pope_on_the_default_model(default_bundle):
    rows, figures = run_quick("pope", n_samples=4, bundle=default_bundle)
    assert [row["n"] for row in rows] == [4, 4] and len(figures) == 1
    assert 0.0 <= rows[1]["f1"] <= 1.0 and rows[0]["yes_ratio"] + rows[0]["unparsed"] / 4 <= 1.0


def test_load_full_results_reads_a_cli_output_folder(tiny_bundle, tmp_path):
    from var_core.eval.quick import load_full_results

    main(["pope", "--n", "2", "--out", str(tmp_path / "pope"), *TINY], bundle=tiny_bundle)
    rows, pngs, meta = load_full_results("pope", root=tmp_path)
    assert rows[0]["condition"] == "VAR off" and pngs[0].endswith("pope_metrics.png") and meta["samples"] == 2
    assert load_full_results("sweep", root=tmp_path) is None
