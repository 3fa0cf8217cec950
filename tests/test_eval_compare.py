"""`python -m var_core.eval compare`: every method on the same samples vs the baseline, on a tiny random LLaVA."""

import json

import pytest

from var_core.eval.__main__ import main
from var_core.eval.compare import compare_samples, parse_methods, parse_params, run_compare
from var_core.eval.runner import merge
from var_core.eval.experiments import EXPERIMENTS
from var_core.interventions.registry import METHODS

N, PER_KIND = 4, 1  # 4 yes/no + 1 per kind and family = 12 samples
FITS = {"vaf": {"start_layer": 1, "end_layer": 3}}  # VAF's 9–14 do not exist in a 4-layer model


def fitting_params(methods):
    return {name: params for name, params in FITS.items() if name in methods}


@pytest.fixture(scope="module")
def samples():
    return compare_samples(N, per_kind=PER_KIND)


@pytest.fixture(scope="module")
def compared(tiny_bundle, samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    methods = list(METHODS)
    return run_compare(tiny_bundle, samples, methods, fitting_params(methods), out=out), out


def test_samples_are_yes_no_and_every_heldout_kind(samples):
    kinds = [getattr(s, "kind", "yesno") or "yesno" for s in samples]
    assert kinds.count("yesno") == N
    assert {k: kinds.count(k) for k in ("colour", "shape", "count", "position")} == dict.fromkeys(
        ("colour", "shape", "count", "position"), 2 * PER_KIND)
    assert len({s.id for s in samples}) == len(samples)
    assert samples[-1].image().size[0] > 0  # the shifted family renders


def test_families_choose_the_heldout_scenes_and_an_unknown_one_is_refused(capsys):
    large = compare_samples(0, per_kind=2, families=("large",))
    assert len(large) == 8 and {s.source.split(":")[0] for s in large} == {"large"}
    assert large[0].image().size[0] >= 128  # the large family renders
    with pytest.raises(ValueError, match="unknown scene family 'huge'; the families are: training-like, shifted, large"):
        compare_samples(0, per_kind=1, families=("huge",))
    with pytest.raises(SystemExit):
        main(["compare", "--out", "unused", "--families", "huge"])
    assert "unknown scene family 'huge'" in capsys.readouterr().err


def test_table_has_every_method_with_intervals(compared):
    result, out = compared
    rows = {row["condition"]: row for row in result.rows}
    assert list(rows) == list(METHODS)  # every registered method, baseline first
    for row in rows.values():
        assert row["n"] == N + 8 * PER_KIND
        for column in ("pope_accuracy_minus_baseline_ci95", "heldout_accuracy_minus_baseline_ci95",
                       "accuracy_minus_baseline_ci95", "pope_accuracy_ci95"):
            low, high = row[column]
            assert low <= high
        assert 0.0 <= row["changed_vs_baseline"] <= 1.0
        assert row["time_ratio_vs_baseline"] > 0
    written = json.loads((out / "summary.json").read_text())["rows"]
    assert [row["condition"] for row in written] == list(METHODS)
    assert (out / "table.csv").read_text().count("\n") == len(METHODS) + 1


def test_baseline_change_is_zero(compared):
    base = compared[0].rows[0]
    assert base["condition"] == "baseline"
    assert base["changed_vs_baseline"] == 0.0 and base["answers_changed"] == 0
    assert base["accuracy_minus_baseline"] == 0.0 and base["accuracy_minus_baseline_ci95"] == [0.0, 0.0]
    assert base["pope_accuracy_minus_baseline_ci95"] == [0.0, 0.0]
    assert base["time_ratio_vs_baseline"] == 1.0


def test_a_method_that_changes_nothing_changes_no_answer(tiny_bundle, samples):
    result = run_compare(tiny_bundle, samples[:N + 2], "pai", {"pai": {"alpha": 0.0, "gamma": 1.0}})
    pai = result.rows[1]
    assert pai["condition"] == "pai" and json.loads(pai["params"])["alpha"] == 0.0
    assert pai["answers_changed"] == 0 and pai["changed_vs_baseline"] == 0.0
    assert pai["accuracy_minus_baseline_ci95"] == [0.0, 0.0]


def test_resume_skips_done_samples(tiny_bundle, samples, tmp_path):
    first = run_compare(tiny_bundle, samples[:3], "var", out=tmp_path)
    assert first.meta["runs_computed"] == 6
    again = run_compare(tiny_bundle, samples[:6], "var", out=tmp_path)
    assert again.meta["runs_computed"] == 6 and again.meta["runs_from_cache"] == 6
    for record in (r for r in again.records if r["index"] < 3):  # the done samples, as they were
        done = next(r for r in first.records if (r["sample_id"], r["condition"]) == (record["sample_id"],
                                                                                     record["condition"]))
        assert record["answer"] == done["answer"] and record["seconds"] == done["seconds"]


def test_cli_shards_merge_into_one_table(tiny_bundle, tmp_path):
    base = ["compare", "--n", "4", "--per-kind", "0", "--methods", "baseline,var", "--no-bar", "--cache",
            str(tmp_path / "cache")]
    for i in range(2):
        assert main([*base, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")], bundle=tiny_bundle) == 0
    assert main([*base, "--out", str(tmp_path / "whole")], bundle=tiny_bundle) == 0
    merged = merge(EXPERIMENTS, [tmp_path / "s0", tmp_path / "s1"])
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())["rows"]
    assert [r["accuracy"] for r in merged.rows] == [r["accuracy"] for r in whole]
    assert [r["answers_changed"] for r in merged.rows] == [r["answers_changed"] for r in whole]


@pytest.mark.parametrize("argv, message", [
    (["--methods", "baseline,nope"], "unknown method 'nope'"),
    (["--methods", "pai", "--params", "pai.beta=1"], "takes alpha"),
    (["--methods", "pai", "--params", "pai.alpha=-1"], "alpha=-1 must be a number"),
    (["--methods", "pai", "--params", "pai.alpha"], "must look like method.parameter=value"),
    (["--methods", "pai", "--params", "vaf.enh_para=1.2"], "not among the compared methods"),
    (["--methods", "vaf"], "start_layer=9"),  # VAF's layers 9–14 in a 4-layer model: before any sample
])
def test_bad_methods_and_params_give_clean_errors(tiny_bundle, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--n", "2", "--per-kind", "0", "--no-bar", "--out", str(tmp_path / "o"), *argv],
             bundle=tiny_bundle)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing ran


def test_vaf_that_does_not_fit_fails_before_the_first_sample(tiny_bundle, samples):
    with pytest.raises(ValueError, match=r"'vaf'.*start_layer=9.*4 layers"):
        run_compare(tiny_bundle, samples, "baseline,vaf")


def test_parsers():
    assert parse_methods(None) == list(METHODS)
    assert parse_methods("pai,var") == ["baseline", "pai", "var"]
    assert parse_params(["pai.alpha=0.5,pai.start_layer=1", "var.p=0.2"], ["baseline", "pai", "var"]) == {
        "pai": {"alpha": 0.5, "start_layer": 1}, "var": {"p": 0.2}}
    with pytest.raises(ValueError, match="twice"):
        parse_methods("var,var")
