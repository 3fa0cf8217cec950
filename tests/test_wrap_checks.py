"""`wrap` checks its arguments before any model work, names the real problem, and keys discovered sink dims by the
weights, not by the folder they were loaded from."""

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from tests.tiny_llava import TINY_SINK_DIM, tiny_llava
from tests.tiny_models import tiny_qwen2_vl
from var_core.models import wrap


def test_a_missing_or_wrong_processor_is_refused_at_wrap_time():
    own = tiny_llava()
    with pytest.raises(TypeError, match=r"wrap\(processor=…\) expects the model's multimodal processor.*got None"):
        wrap(own.model, None, sink_dims=[TINY_SINK_DIM], tau=1.0)
    with pytest.raises(TypeError, match="which has no .*image_processor"):  # AutoTokenizer instead of AutoProcessor
        wrap(own.model, own.processor.tokenizer, sink_dims=[TINY_SINK_DIM], tau=1.0)
    with pytest.raises(TypeError, match="which has no tokenizer"):
        wrap(own.model, own.processor.image_processor, sink_dims=[TINY_SINK_DIM], tau=1.0)


def test_what_is_not_a_loaded_transformers_model_is_refused():
    own = tiny_llava()
    with pytest.raises(TypeError, match=r"got str 'llava-hf/llava-1.5-7b-hf': load it first.*load_model"):
        wrap("llava-hf/llava-1.5-7b-hf", own.processor)
    with pytest.raises(TypeError, match=r"a torch.nn.Module with a .config.*got Linear"):
        wrap(torch.nn.Linear(2, 2), own.processor)


@pytest.mark.parametrize("sink_dims, error, message", [
    (5, TypeError, r"sink_dims=….*list of dimension indices.*got 5"),
    ("5", TypeError, "list of dimension indices"),
    ([1.5], TypeError, "list of dimension indices"),
    ([True], TypeError, "list of dimension indices"),
    ([], ValueError, "at least one dimension"),
    ([5, 5], ValueError, "each once"),
    ([64], ValueError, r"in \[0, 64\).*\[64\] are outside"),
])
def test_bad_sink_dims_are_refused_naming_the_argument(sink_dims, error, message):
    own = tiny_llava()
    with pytest.raises(error, match=message):
        wrap(own.model, own.processor, sink_dims=sink_dims, tau=1.0)


def test_a_bad_tau_is_refused_before_the_calibration_forward(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("discovery ran before tau was checked")

    monkeypatch.setattr("var_core.sink.discover_sink_dims", fail)
    own = tiny_qwen2_vl()
    with pytest.raises(TypeError, match=r"wrap\(tau=…\) expects a number"):
        wrap(own.model, own.processor, name="local/qwen", tau="2")
    with pytest.raises(ValueError, match=r"wrap\(tau=…\): tau=100.0 is invalid for hidden size"):
        wrap(own.model, own.processor, name="local/qwen", tau=100.0)


def test_an_unknown_family_name_lists_the_known_families():
    own = tiny_llava()
    with pytest.raises(ValueError, match=r"wrap\(family='mamba'\): no such family; known families: .*idefics3.*llava"
                       ) as refused:
        wrap(own.model, own.processor, family="mamba")
    assert "not a supported architecture" not in str(refused.value)  # the llava model is supported


def test_a_known_family_that_does_not_fit_names_the_model_and_its_family():
    own = tiny_llava()
    with pytest.raises(ValueError, match=r"family='qwen2_vl'\) does not fit the model: got a "
                                         r"LlavaForConditionalGeneration \(model type 'llava'\), which looks like "
                                         r"family 'llava'; pass family='llava'"):
        wrap(own.model, own.processor, family="qwen2_vl", sink_dims=[TINY_SINK_DIM], tau=1.0)
    assert wrap(own.model, own.processor, family="llava", sink_dims=[TINY_SINK_DIM]).adapter.family == "llava"


def planted(dim: int) -> LlavaForConditionalGeneration:
    """A tiny LLaVA whose token embeddings carry a massive activation in `dim`: discovery finds that dim."""
    model = tiny_llava(seed=1).model
    with torch.no_grad():
        model.model.language_model.embed_tokens.weight[:, dim] = 30.0
    return model


def test_new_weights_saved_to_the_same_folder_get_their_sink_dims_discovered_again(tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path / "cache"))
    folder, processor = tmp_path / "my-finetune", tiny_llava().processor
    planted(3).save_pretrained(folder)
    first = wrap(LlavaForConditionalGeneration.from_pretrained(folder), processor, tau=1.0)
    assert first.name == str(folder) and first.backbone.sink_dims == (3,) and not first.extra["sink_dims_from_cache"]
    again = wrap(LlavaForConditionalGeneration.from_pretrained(folder), processor, tau=1.0)
    assert again.extra["sink_dims_from_cache"] and again.backbone.sink_dims == (3,)  # same weights: the cache
    planted(11).save_pretrained(folder)  # overwrite the folder with other weights
    second = wrap(LlavaForConditionalGeneration.from_pretrained(folder), processor, tau=1.0)
    assert not second.extra["sink_dims_from_cache"] and second.backbone.sink_dims == (11,)
    assert second.extra["sink_cache"] != first.extra["sink_cache"]


def test_a_discovery_that_finds_no_visual_sink_at_tau_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    own = tiny_qwen2_vl()  # its calibration image's largest visual φ stays below the registry rule's τ
    with pytest.warns(UserWarning, match=r"local/qwen: no visual sink at τ = 6.4 on the calibration image") as shown:
        bundle = wrap(own.model, own.processor, name="local/qwen")
    assert bundle.extra["warnings"] == [str(shown[0].message)] and "pass a τ below" in bundle.extra["warnings"][0]
    lower = wrap(own.model, own.processor, name="local/qwen", tau=1.0)  # from the cache: its φ record decides
    assert lower.extra["sink_dims_from_cache"] and lower.extra["warnings"] == []
    with pytest.warns(UserWarning, match="no visual sink at τ = 6.4"):
        cached = wrap(own.model, own.processor, name="local/qwen")
    assert cached.extra["sink_dims_from_cache"] and cached.extra["warnings"] == bundle.extra["warnings"]
