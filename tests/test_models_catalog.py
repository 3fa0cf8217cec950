"""The model catalog: allow-list, loading from saved files through the real loader, sink-dim discovery + cache,
and the error messages people see when a model cannot be loaded."""

import json
import socket

import pytest
import torch

from tests.tiny_families import tiny_gemma3, tiny_qwen3_vl, tiny_smolvlm2
from tests.tiny_llava import tiny_llava
from tests.tiny_models import (noise_image, tiny_idefics3, tiny_internvl, tiny_llava_next, tiny_qwen2_5_vl,
                               tiny_qwen2_vl)
from var_core.models import catalog
from var_core.models.catalog import (CATALOG, DEFAULT_MODEL_ID, ModelLoadError, adapter_for, explain_load_error,
                                     load_model)
from var_core.registry import BACKBONES
from var_core.run import generate
from var_core.sink import MAX_SINK_DIMS

BUILDERS = {"llava": tiny_llava, "llava_next": tiny_llava_next, "qwen2_vl": tiny_qwen2_vl, "qwen2_5_vl": tiny_qwen2_5_vl,
            "internvl": tiny_internvl, "idefics3": tiny_idefics3, "qwen3_vl": tiny_qwen3_vl, "gemma3": tiny_gemma3,
            "smolvlm2": tiny_smolvlm2}
ADAPTER_FAMILY = {"qwen2_5_vl": "qwen2_vl", "qwen3_vl": "qwen2_vl", "smolvlm2": "idefics3"}


def test_every_entry_has_an_adapter_and_registered_backbones_exist():
    for entry in CATALOG.values():
        if entry.family != "default":
            assert adapter_for(entry.family).family in (entry.family, "qwen2_vl")
    assert CATALOG[DEFAULT_MODEL_ID].backbone in BACKBONES
    assert CATALOG["llava-hf/llava-1.5-7b-hf"].backbone == "llama-2-7b"
    assert {"llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "internvl", "idefics3",
            "gemma3"} <= {e.family for e in CATALOG.values()}


def test_ids_off_the_allow_list_need_allow_any():
    with pytest.raises(ModelLoadError, match="--allow-any-model"):
        load_model("someone/unknown-vlm")
    with pytest.raises(ModelLoadError, match="no model id"):
        load_model("  ")


def test_the_default_model_is_an_entry_loaded_lazily(monkeypatch):
    import var_core.models.default as default

    sentinel = object()
    monkeypatch.setattr(default, "load_default_model", lambda: sentinel)
    assert load_model(DEFAULT_MODEL_ID) is sentinel


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Each tiny model saved with save_pretrained, as a hub snapshot would be on disk."""
    folders = {}
    for family, build in BUILDERS.items():
        bundle = build()
        folder = tmp_path_factory.mktemp(family)
        bundle.model.save_pretrained(folder)
        bundle.processor.save_pretrained(folder)
        folders[family] = (folder, bundle)
    return folders


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_loader_reads_saved_files_of_every_family(saved_models, family, tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    folder, original = saved_models[family]
    loaded = load_model(str(folder), allow_any=True)
    assert loaded.adapter.family == ADAPTER_FAMILY.get(family, family)
    assert loaded.device.type == "cpu" and loaded.model.dtype == torch.float32
    assert type(loaded.model) is type(original.model) and type(loaded.processor).__name__ == type(
        original.processor).__name__
    image = noise_image(64, 64)
    mine, theirs = loaded.adapter.prepare(loaded, image, "what colour ?"), original.adapter.prepare(
        original, image, "what colour ?")
    assert torch.equal(mine.inputs["input_ids"], theirs.inputs["input_ids"])
    assert torch.equal(mine.visual_positions, theirs.visual_positions) and mine.grid == theirs.grid
    # unknown backbone → sink dims discovered on a calibration forward, cached as JSON
    cached = json.loads((tmp_path / "sink_dims").glob("*.json").__next__().read_text())
    assert loaded.extra["backbone_discovered"] and list(loaded.backbone.sink_dims) == cached["sink_dims"]
    assert 1 <= len(cached["sink_dims"]) <= MAX_SINK_DIMS and "discovered" in loaded.backbone.source
    assert 0 < loaded.backbone.tau < 8


def test_discovered_sink_dims_are_reused_from_the_cache(saved_models, tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_CACHE_DIR", str(tmp_path))
    folder, _ = saved_models["qwen2_vl"]
    first = load_model(str(folder), allow_any=True)

    def fail(*args, **kwargs):
        raise AssertionError("discovery ran again")

    monkeypatch.setattr("var_core.sink.discover_sink_dims", fail)
    second = load_model(str(folder), allow_any=True)
    assert second.extra["sink_dims_from_cache"] and second.backbone == first.backbone
    trace = generate(second, noise_image(40, 56), "what colour ?", max_new_tokens=2)
    assert trace.settings["sink_dims"] == list(first.backbone.sink_dims)


def test_unsupported_architectures_are_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'llama' model without an image token; supported"):
        load_model(str(tmp_path), allow_any=True)


def offline_error():
    """The chain transformers raises here with no network (captured from a real attempt on this machine)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        try:
            try:
                raise socket.gaierror(-2, "Name or service not known")
            except socket.gaierror as dns:
                raise LocalEntryNotFoundError("cannot find the requested files in the local cache") from dns
        except LocalEntryNotFoundError as missing:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from missing
    except OSError as error:
        return error


def hub_error(name: str):
    from types import SimpleNamespace

    from huggingface_hub import errors

    response = SimpleNamespace(headers={}, request=None, status_code=401)  # what the Hub answered, minimally
    return getattr(errors, name)("401 Client Error", response=response)


@pytest.mark.parametrize("make_error, message", [
    (offline_error, "Hub is not reachable"),
    (lambda: hub_error("GatedRepoError"), "gated repository"),
    (lambda: hub_error("RepositoryNotFoundError"), "not found on the Hugging Face Hub"),
    (lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "does not fit in memory"),
    (lambda: ValueError("x requires `torchvision` to be installed"), "pip install torchvision"),
    (lambda: KeyError("weird"), "could not load"),
])
def test_load_errors_say_what_to_do(make_error, message):
    assert message in str(explain_load_error("org/model", make_error()))


def test_any_failure_while_loading_becomes_a_model_load_error(monkeypatch):
    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(catalog, "_load_hub_model", boom)
    with pytest.raises(ModelLoadError, match="does not fit in memory"):
        load_model("Qwen/Qwen2-VL-7B-Instruct")


def test_every_registry_entry_serves_a_catalogue_model_and_names_its_source():
    used = {entry.backbone for entry in CATALOG.values()}
    for backbone in BACKBONES.values():
        assert backbone.name in used, f"{backbone.name} is in the registry but no catalogue model uses it"
        assert any(word in backbone.source for word in ("paper", "official code", "measured", "third-party"))
