"""scripts/null_word_probe.py: the measurement behind the default model's null word, in miniature."""

from scripts.null_word_probe import LABEL_KINDS, probe


def test_endoftext_backgrounds_are_sinks_and_objects_never_are():
    """With oracle tokens (v3's object targets) through the pretrained LM, `<|endoftext|>` backgrounds give visual
    sinks on background only, more than the space token gives on the same scenes (METHOD.md §4b, model card run 14)."""
    results = probe(scenes=2, words=[" ", "<|endoftext|>"])
    assert len(results) == 2 * len(LABEL_KINDS) * 2
    v3 = [key for key in results if "v3" in key]
    endoftext = [results[key] for key in v3 if "endoftext" in key]
    space = [results[key] for key in v3 if "endoftext" not in key]
    assert all(r["on_object_patches"] == 0 and min(r["sinks_per_image"]) >= 10 for r in endoftext)
    assert sum(r["total"] for r in endoftext) > sum(r["total"] for r in space)
