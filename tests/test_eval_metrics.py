"""Experiment metrics against hand-computed confusion matrices; parsing, overlap, cache, shards, datasets."""

import json
import math

import pytest

from var_core.eval.cache import ResultCache, settings_hash
from var_core.eval.datasets import load_pope, synthetic_multi_question, synthetic_pope
from var_core.eval.metrics import (binary_metrics, bootstrap_interval, confusion, jaccard, mean_pairwise_jaccard, mean_std,
                                  parse_yes_no, wilson_interval)
from var_core.eval.shard import parse_shard, take_shard
from var_core.scenes import make_scene


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("yes.", "yes"), ("  YES, there is a red circle.", "yes"), ("Yeah", "yes"),
    ("No", "no"), ("no.", "no"), ("There is no red circle.", "no"), ("It isn't there", "no"),
    ("It isn\u2019t there", "no"), ("Not really", "no"), ("", None), (None, None), ("The image is", None),
    ("red", None), ("Nothing like that", "no"), ("knows", None),
])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) == expected


def test_metrics_of_a_hand_computed_confusion_matrix():
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "yes"]
    preds = ["yes", "no", "yes", "yes", "no", None, "no", "yes"]  # tp 3, fn 1, fp 1, tn 3 (one unparsed → no)
    m = binary_metrics(labels, preds)
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"], m["unparsed"]) == (3, 1, 1, 3, 8, 1)
    assert m["accuracy"] == 0.75 and m["precision"] == 0.75 and m["recall"] == 0.75 and m["f1"] == 0.75
    assert m["yes_ratio"] == 0.5


def test_metrics_when_always_yes():
    m = binary_metrics(["yes", "yes", "no", "no"], ["yes"] * 4)  # tp 2, fp 2: P = 1/2, R = 1, F1 = 2/3
    assert (m["precision"], m["recall"], m["yes_ratio"], m["accuracy"]) == (0.5, 1.0, 1.0, 0.5)
    assert m["f1"] == pytest.approx(2 / 3)


def test_metrics_with_empty_denominators_are_zero():
    m = binary_metrics(["yes", "no", "no"], ["no", "no", "no"])  # tp 0, fp 0
    assert (m["precision"], m["recall"], m["f1"], m["yes_ratio"]) == (0.0, 0.0, 0.0, 0.0)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert binary_metrics([], [])["accuracy"] == 0.0


def test_confusion_rejects_bad_labels_and_lengths():
    with pytest.raises(ValueError, match="label 'maybe'"):
        confusion(["maybe"], ["yes"])
    with pytest.raises(ValueError):
        confusion(["yes", "no"], ["yes"])


def test_jaccard_and_pairwise_mean():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5 and jaccard([], []) == 1.0 and jaccard({1}, set()) == 0.0
    assert mean_pairwise_jaccard([{1, 2}, {1, 2}, {3}]) == pytest.approx((1 + 0 + 0) / 3)
    assert math.isnan(mean_pairwise_jaccard([{1}]))


def test_mean_std_uses_the_sample_std():
    assert mean_std([1, 2, 3]) == (2.0, 1.0) and mean_std([5]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_shards_partition_the_samples_and_keep_images_together():
    samples = synthetic_multi_question(5)
    shards = [take_shard(samples, (i, 3)) for i in range(3)]
    assert sorted(s.id for shard in shards for s in shard) == sorted(s.id for s in samples)
    for shard in shards:
        for other in shards:
            if other is not shard:
                assert not {s.image_id for s in shard} & {s.image_id for s in other}
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "x", "1-2"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_shard_auto_reads_accelerate_env(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard("auto") == (2, 4)


def test_cache_survives_reopening_and_skips_a_cut_line(tmp_path):
    cache = ResultCache(tmp_path, writer="w")
    cache.put("a|1", {"answer": "yes"})
    with cache.path.open("a") as file:
        file.write('{"key": "b|1", "resu')  # a run killed mid-write
    again = ResultCache(tmp_path, writer="w2")
    assert again.get("a|1") == {"answer": "yes"} and again.get("b|1") is None and len(again) == 1
    assert settings_hash({"a": 1, "b": [2]}) == settings_hash({"b": [2], "a": 1}) != settings_hash({"a": 2})


def test_synthetic_pope_is_balanced_and_answers_follow_the_scene():
    samples = synthetic_pope(20)
    assert [s.label for s in samples] == ["yes", "no"] * 10 and len({s.id for s in samples}) == 20
    for sample in samples:
        scene = make_scene(int(sample.source.split(":")[1]))
        named = {f"{s.colour} {s.kind}" for s in scene.shapes}
        asked = sample.question.split(" ", 3)[3].removesuffix(" in the image?")  # "Is there a(n) <colour shape>"
        assert (asked in named) == (sample.label == "yes")
    assert samples[0].image().size == (128, 128)


def test_load_pope_reads_lines_and_explains_mistakes(tmp_path):
    from PIL import Image
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    rows = [{"question_id": 7, "image": "a.png", "text": "Is there a cat in the image?", "label": "no"},
            {"question_id": 8, "image": "a.png", "text": "Is there a dog in the image?", "label": "Yes"}]
    path = tmp_path / "pope.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    samples = load_pope(path, tmp_path)
    assert [(s.id, s.label) for s in samples] == [("pope7", "no"), ("pope8", "yes")]
    assert samples[0].image().size == (16, 16) and len(load_pope(path, tmp_path, limit=1)) == 1
    path.write_text(json.dumps({**rows[0], "image": "missing.png"}))
    with pytest.raises(ValueError, match="does not exist"):
        load_pope(path, tmp_path)
    path.write_text(json.dumps({**rows[0], "label": "maybe"}))
    with pytest.raises(ValueError, match="yes/no 'label'"):
        load_pope(path, tmp_path)


def test_wilson_interval_matches_hand_values_and_stays_in_range():
    low, high = wilson_interval(50, 100)
    assert abs(low - 0.4038) < 1e-3 and abs(high - 0.5962) < 1e-3
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and abs(high - 0.2775) < 1e-3
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 1.0)


def test_bootstrap_interval_brackets_the_statistic_and_is_reproducible():
    values = [1] * 70 + [0] * 30
    mean = lambda idx: sum(values[i] for i in idx) / len(idx)  # noqa: E731
    low, high = bootstrap_interval(mean, len(values))
    assert low < 0.7 < high and 0.1 < high - low < 0.25  # ≈ ±1.96·√(0.21/100) = ±0.09
    assert bootstrap_interval(mean, len(values)) == (low, high)
    assert bootstrap_interval(lambda idx: 0.5, 10) == (0.5, 0.5)
