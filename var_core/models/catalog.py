"""The model allow-list: model id → family adapter + backbone, and `load_model`, the one way the app loads a model.

Every hub model is loaded with transformers' auto classes (`trust_remote_code` is never turned on), on CUDA in
bfloat16 (float16 before Ampere) with `device_map="auto"` when a GPU is there, on Apple MPS in float16, else on the
CPU in float32 (`device_choice`, from `var_core.gpu`). Failures become a
`ModelLoadError` whose message says what went wrong (no network, gated repo, out of memory, unknown id, missing
package) and what to do. Backbones without published sink dimensions get them from `discover_sink_dims` on one
calibration forward at first load, cached by the weights' identity (`var_core.models.sink_cache`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch

from var_core.inputs import shown
from var_core.models.bundle import ModelBundle
from var_core.models.checks import check_model, check_processor, check_tau, checked_sink_dims
from var_core.models.common import PRESET_SETTING, check_preset, image_only
from var_core.models.generic import generic_problem, image_token_id
from var_core.models.sink_cache import calibration_warning, discover_backbone
from var_core.registry import BACKBONES, Backbone, default_tau

DEFAULT_MODEL_ID = "visual-sink-lens/smollm2-llava-organism"
# what a caller's user does to load an id off the allow-list, for `load_model`'s refusal (the eval CLI has its own)
ALLOW_ANY_HINT = ("call load_model(id, allow_any=True) to load other models of a supported architecture (in the app: "
                  "--allow-any-model), or wrap one you loaded yourself with var_core.models.wrap")
APP_ALLOW_ANY_HINT = "start the app with --allow-any-model to load other models of a supported architecture"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do. The caller keeps its previous model."""


@dataclass(frozen=True)
class CatalogEntry:
    """One allow-listed model: which adapter family serves it and which LLM backbone it was built on."""

    model_id: str
    family: str  # key of ADAPTERS, or "default"
    backbone: str  # registry name (var_core.registry); not in the registry → discovered at first load
    llm: str  # the language model inside, for the UI and the README table


CATALOG: dict[str, CatalogEntry] = {e.model_id: e for e in [
    CatalogEntry(DEFAULT_MODEL_ID, "default", "smollm2-135m", "SmolLM2-135M-Instruct (embedded default model)"),
    # LLaVA-1.5: Vicuna v1.5 = LLaMA-2 fine-tunes; the paper's sink dims (registry) apply.
    CatalogEntry("llava-hf/llava-1.5-7b-hf", "llava", "llama-2-7b", "Vicuna-7B v1.5 (LLaMA-2-7B)"),
    CatalogEntry("llava-hf/llava-1.5-13b-hf", "llava", "llama-2-13b", "Vicuna-13B v1.5 (LLaMA-2-13B)"),
    CatalogEntry("llava-hf/llava-interleave-qwen-0.5b-hf", "llava", "qwen1.5-0.5b", "Qwen1.5-0.5B"),
    # LLaVA-NeXT (v1.6)
    CatalogEntry("llava-hf/llava-v1.6-vicuna-7b-hf", "llava_next", "llama-2-7b", "Vicuna-7B v1.5 (LLaMA-2-7B)"),
    CatalogEntry("llava-hf/llava-v1.6-vicuna-13b-hf", "llava_next", "llama-2-13b", "Vicuna-13B v1.5 (LLaMA-2-13B)"),
    CatalogEntry("llava-hf/llava-v1.6-mistral-7b-hf", "llava_next", "mistral-7b", "Mistral-7B-Instruct v0.2"),
    # Qwen2-VL / Qwen2.5-VL
    CatalogEntry("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", "qwen2-1.5b", "Qwen2-1.5B"),
    CatalogEntry("Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", "qwen2-7b", "Qwen2-7B"),
    CatalogEntry("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", "qwen2.5-3b", "Qwen2.5-3B"),
    CatalogEntry("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", "qwen2.5-7b", "Qwen2.5-7B"),
    # InternVL3, transformers-native ("-hf") format only
    CatalogEntry("OpenGVLab/InternVL3-1B-hf", "internvl", "qwen2.5-0.5b", "Qwen2.5-0.5B"),
    CatalogEntry("OpenGVLab/InternVL3-2B-hf", "internvl", "qwen2.5-1.5b", "Qwen2.5-1.5B"),
    CatalogEntry("OpenGVLab/InternVL3-8B-hf", "internvl", "qwen2.5-7b", "Qwen2.5-7B"),
    # SmolVLM (Idefics3 architecture)
    CatalogEntry("HuggingFaceTB/SmolVLM-256M-Instruct", "idefics3", "smollm2-135m", "SmolLM2-135M"),
    CatalogEntry("HuggingFaceTB/SmolVLM-500M-Instruct", "idefics3", "smollm2-360m", "SmolLM2-360M"),
    # SmolVLM2 (`smolvlm`: the Idefics3 layout); the 256M model's LM is SmolLM2-135M as in SmolVLM-256M
    CatalogEntry("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "idefics3", "smollm2-135m", "SmolLM2-135M"),
    CatalogEntry("HuggingFaceTB/SmolVLM2-500M-Video-Instruct", "idefics3", "smollm2-360m", "SmolLM2-360M"),
    CatalogEntry("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "idefics3", "smollm2-1.7b", "SmolLM2-1.7B"),
    # Qwen3-VL (dense and MoE): Qwen2-VL's merged-patch layout, 16-px patches
    CatalogEntry("Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", "qwen3-vl-2b", "Qwen3-1.7B"),
    CatalogEntry("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", "qwen3-vl-4b", "Qwen3-4B"),
    CatalogEntry("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", "qwen3-vl-8b", "Qwen3-8B"),
    CatalogEntry("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3_vl_moe", "qwen3-vl-30b-a3b", "Qwen3-30B-A3B (MoE)"),
    # InternVL3.5, transformers-native ("-HF") format, Qwen3 LMs (the GPT-OSS one passes learned sinks: refused)
    CatalogEntry("OpenGVLab/InternVL3_5-1B-HF", "internvl", "qwen3-0.6b", "Qwen3-0.6B"),
    CatalogEntry("OpenGVLab/InternVL3_5-2B-HF", "internvl", "qwen3-1.7b", "Qwen3-1.7B"),
    CatalogEntry("OpenGVLab/InternVL3_5-4B-HF", "internvl", "qwen3-4b", "Qwen3-4B"),
    CatalogEntry("OpenGVLab/InternVL3_5-8B-HF", "internvl", "qwen3-8b", "Qwen3-8B"),
    # Gemma 3 (gated on the hub: accept the licence first)
    CatalogEntry("google/gemma-3-4b-it", "gemma3", "gemma-3-4b", "Gemma 3 4B"),
    CatalogEntry("google/gemma-3-12b-it", "gemma3", "gemma-3-12b", "Gemma 3 12B"),
    # LLaVA-OneVision: SigLIP + Qwen2, anyres tiles like LLaVA-NeXT
    CatalogEntry("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava_onevision", "qwen2-0.5b", "Qwen2-0.5B"),
    CatalogEntry("llava-hf/llava-onevision-qwen2-7b-ov-hf", "llava_onevision", "qwen2-7b", "Qwen2-7B"),
    # Mistral-3 (Pixtral tower + 2 × 2 patch merger): 24B, ≈ 48 GB of bfloat16 weights, one 80 GB GPU (or two 48 GB)
    CatalogEntry("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "mistral3", "mistral-small-3.1-24b",
                 "Mistral-Small-3.1-24B"),
    # Pixtral-12B in LLaVA form (a Pixtral tower, one token per 16-px patch): ≈ 25 GB of weights, a 40 GB+ GPU
    CatalogEntry("mistral-community/pixtral-12b", "pixtral", "mistral-nemo-12b", "Mistral-NeMo-12B"),
]}

# config.model_type → adapter family; other image-text-to-text models take the generic path (var_core.models.generic)
FAMILY_OF_MODEL_TYPE = {"llava": "llava", "llava_next": "llava_next", "qwen2_vl": "qwen2_vl",
                        "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "qwen3_vl_moe": "qwen3_vl_moe",
                        "internvl": "internvl", "idefics3": "idefics3", "smolvlm": "idefics3", "gemma3": "gemma3",
                        "llava_onevision": "llava_onevision", "mistral3": "mistral3"}
# processor class used when AutoProcessor needs torchvision (for video, or Pixtral's import); keyed by model type,
# "pixtral" by family (its model type is "llava")
PROCESSOR_CLASS = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                   "qwen3_vl": "Qwen3VLProcessor", "qwen3_vl_moe": "Qwen3VLProcessor",
                   "internvl": "InternVLProcessor", "smolvlm": "SmolVLMProcessor",
                   "llava_onevision": "LlavaOnevisionProcessor", "mistral3": "PixtralProcessor",
                   "pixtral": "PixtralProcessor"}
FAMILIES = sorted({*FAMILY_OF_MODEL_TYPE.values(), "pixtral", "generic"})


def family_of(config) -> str | None:
    """The adapter family of a model config: by `model_type`, except LLaVA with a Pixtral vision tower
    (mistral-community/pixtral-12b), which is "pixtral"; None when no family adapter knows it."""
    vision = getattr(config, "vision_config", None)
    if config.model_type == "llava" and getattr(vision, "model_type", None) == "pixtral":
        return "pixtral"
    return FAMILY_OF_MODEL_TYPE.get(config.model_type)


def adapter_for(family: str):
    """A fresh adapter of one family (imported lazily: one module per family)."""
    if family == "llava":
        from var_core.models.llava import LlavaAdapter
        return LlavaAdapter()
    if family == "llava_next":
        from var_core.models.llava_next import LlavaNextAdapter
        return LlavaNextAdapter()
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"):
        from var_core.models.qwen2_vl import Qwen2VLAdapter
        return Qwen2VLAdapter()
    if family == "internvl":
        from var_core.models.internvl import InternVLAdapter
        return InternVLAdapter()
    if family == "idefics3":
        from var_core.models.idefics3 import Idefics3Adapter
        return Idefics3Adapter()
    if family == "gemma3":
        from var_core.models.gemma3 import Gemma3Adapter
        return Gemma3Adapter()
    if family == "llava_onevision":
        from var_core.models.llava_next import LlavaOnevisionAdapter
        return LlavaOnevisionAdapter()
    if family == "mistral3":
        from var_core.models.mistral3 import Mistral3Adapter
        return Mistral3Adapter()
    if family == "pixtral":
        from var_core.models.mistral3 import PixtralLlavaAdapter
        return PixtralLlavaAdapter()
    if family == "generic":
        from var_core.models.generic import GenericAdapter
        return GenericAdapter()
    raise ModelLoadError(f"no adapter for family {family!r}; supported: {FAMILIES}")


def device_choice() -> tuple[torch.device, torch.dtype, str | None]:
    """(device, dtype, device_map): CUDA in bfloat16 (float16 before Ampere) spread by accelerate, else Apple MPS
    in float16, else CPU float32; VAR_DEVICE / VAR_DTYPE override. See `var_core.gpu.device_choice`."""
    from var_core.gpu import device_choice as choose

    return choose()


# ---------------------------------------------------------------- errors a person can act on
def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def explain_load_error(model_id: str, exc: BaseException) -> ModelLoadError:
    """Turn whatever loading raised into a ModelLoadError that says what to do."""
    from huggingface_hub import errors as hub

    chain = list(_chain(exc))
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    lowered = text.lower()
    if any(isinstance(e, hub.GatedRepoError) for e in chain) or "gated repo" in lowered:
        return ModelLoadError(f"{model_id} is a gated repository: accept its licence on https://huggingface.co/"
                              f"{model_id} and log in (`hf auth login` or set HF_TOKEN), then try again.")
    if any(isinstance(e, (torch.OutOfMemoryError, MemoryError)) for e in chain) or "out of memory" in lowered \
            or "can't allocate memory" in lowered:
        device = "GPU" if torch.cuda.is_available() else "CPU RAM"
        return ModelLoadError(f"{model_id} does not fit in memory ({device}): pick a smaller model or free memory. "
                              f"The previous model is still loaded.")
    if any(isinstance(e, (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled, ConnectionError)) for e in chain) \
            or "couldn't connect" in lowered or "name or service not known" in lowered:
        return ModelLoadError(f"cannot download {model_id}: the Hugging Face Hub is not reachable and the model is "
                              f"not in the local cache (HF_HOME). Connect to the network, or download it elsewhere "
                              f"(`hf download {model_id}`) and copy the cache here; with the files cached, "
                              f"HF_HUB_OFFLINE=1 skips the network.")
    if any(isinstance(e, hub.RepositoryNotFoundError) for e in chain) or "not a valid model identifier" in lowered:
        return ModelLoadError(f"{model_id} was not found on the Hugging Face Hub (check the spelling; private "
                              f"repositories need HF_TOKEN).")
    for package in ("torchvision", "num2words", "accelerate"):
        if package in lowered and any(isinstance(e, (ImportError, ValueError)) for e in chain):
            return ModelLoadError(f"{model_id} needs the Python package `{package}`: "
                                  f"`pip install {package}` (matching your torch) and try again.")
    return ModelLoadError(f"could not load {model_id}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- loading
def load_processor(source: str, model_type: str):
    """AutoProcessor; where it fails only for want of torchvision (video processors), the image-only processor."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source, trust_remote_code=False)
    except (ImportError, ValueError, TypeError, AttributeError, OSError) as exc:
        if model_type not in PROCESSOR_CLASS or not any("torchvision" in str(e).lower() or "video" in str(e).lower()
                                                        for e in _chain(exc)):
            raise
        import transformers

        if PROCESSOR_CLASS[model_type] == "PixtralProcessor":  # no video processor: only its module needs torchvision
            from var_core.models.mistral3 import pixtral_processor

            return pixtral_processor().from_pretrained(source)
        return image_only(getattr(transformers, PROCESSOR_CLASS[model_type])).from_pretrained(source)


def set_preset(bundle: ModelBundle, preset: str) -> ModelBundle:
    """Record `preset` ("hub" or "paper") in `bundle.extra`; a ValueError if unknown or not for this model."""
    bundle.extra[PRESET_SETTING] = check_preset(bundle, preset)
    return bundle


# ---------------------------------------------------------------- wrapping a model you loaded
def _looks_like(model) -> tuple[str | None, str | None]:
    """(the family that serves `model`, or None; why the generic path cannot, when it is not a family's)."""
    detected = family_of(model.config)
    if detected is not None:
        return detected, None
    problem = generic_problem(model)
    return (None if problem else "generic"), problem


def _family(model, family) -> str:
    """The adapter family of `model`: `family` when it is known and fits the model, else the detected one; a
    ValueError naming the real problem (an unknown name, a family that is not the model's, an architecture none
    serves)."""
    detected, problem = _looks_like(model)
    described = f"{type(model).__name__} (model type {model.config.model_type!r})"
    if family is None and detected is None:
        raise ValueError(f"{described} is not a supported architecture (and not the generic path: {problem}): "
                         f"supported model types {sorted(FAMILY_OF_MODEL_TYPE)}, families {FAMILIES}")
    if family is None or family == detected:
        return detected
    if family not in FAMILIES:
        raise ValueError(f"wrap(family={family!r}): no such family; known families: {', '.join(FAMILIES)} (or leave "
                         f"family out to take it from the model's config)")
    if family == "generic" and generic_problem(model) is None:
        return family  # the generic path serves any model it can, also one a family adapter knows
    looks = f"family {detected!r}" if detected else f"no family (the generic path cannot serve it: {problem})"
    raise ValueError(f"wrap(family={family!r}) does not fit the model: got a {described}, which looks like {looks}; "
                     + (f"pass family={detected!r} or leave family out" if detected else "it cannot be wrapped"))


def wrap(model: torch.nn.Module, processor, family: str | None = None, sink_dims=None, tau: float | None = None,
         name: str | None = None, preset: str = "hub") -> ModelBundle:
    """A `ModelBundle` for a transformers model you loaded yourself (a fine-tune, a local folder, a quantised model),
    so generate, analyze, eval and the explanation maps run on it.

    family: the adapter (default: from `model.config.model_type`); sink_dims / tau: the backbone's sink facts
    (default: the registry's when `name`, default the config's `_name_or_path`, is an allow-listed model, else
    discovered once with a calibration forward and cached, as for hub ids). preset: "hub" (the processor and chat
    template as published) or "paper" (LLaVA-1.5 as the VAR authors ran it; var_core.models.llava). The model is
    put in eval mode. A model type without a family adapter takes the generic path (its visual tokens drawn as a
    strip) when `var_core.models.generic` can serve it. Every argument is checked first: a TypeError or ValueError
    names the argument and what it expects (the model's processor, a known family that fits the model, sink dims in
    the hidden size, τ in (0, √D)), and the supported architectures when the model is none of them. When discovery's
    calibration image has no visual sink at τ, `bundle.extra["warnings"]` says so (also as a Python warning).
    """
    check_model(model)
    check_processor(processor)
    family = _family(model, family)
    model_type = model.config.model_type
    hidden_size = model.config.get_text_config().hidden_size
    sink_dims = checked_sink_dims(sink_dims, hidden_size)
    check_tau(tau, hidden_size)
    name = name or getattr(model.config, "_name_or_path", "") or model_type
    entry = CATALOG.get(name)
    backbone_name = entry.backbone if entry is not None else f"{model_type}:{name}"
    known = BACKBONES.get(backbone_name)
    if known is not None and known.hidden_size != hidden_size:
        raise ValueError(f"{name} has hidden size {hidden_size} but its backbone {backbone_name!r} in the registry "
                         f"has {known.hidden_size}; fix the catalog entry")
    if sink_dims is not None:
        known = Backbone(backbone_name, hidden_size, sink_dims,
                         known.tau if known is not None else default_tau(hidden_size), "sink dims given to wrap()")
    provisional = known or Backbone(backbone_name, hidden_size, (0,), default_tau(hidden_size), "provisional")
    bundle = ModelBundle(model=model.eval(), processor=processor, name=name, backbone=provisional,
                         adapter=adapter_for(family),
                         extra={"family": family, "model_type": model_type, "llm": entry.llm if entry else None,
                                "backbone_discovered": known is None, "warnings": []})
    set_preset(bundle, preset)
    if known is None:
        discovered, path, from_cache, record = discover_backbone(bundle, backbone_name)
        bundle.backbone = discovered
        bundle.extra.update(sink_cache=str(path), sink_dims_from_cache=from_cache)
        _warn(bundle, calibration_warning(record, float(tau) if tau is not None else discovered.tau))
    if tau is not None:
        bundle.backbone = replace(bundle.backbone, tau=float(tau), source=f"{bundle.backbone.source}; τ given to wrap()")
    return bundle


def _warn(bundle: ModelBundle, message: str | None) -> None:
    """Keep `message` in `bundle.extra["warnings"]` and show it (Python's warnings), naming the model."""
    if message:
        bundle.extra["warnings"].append(f"{bundle.name}: {message}")
        warnings.warn(bundle.extra["warnings"][-1], UserWarning, stacklevel=3)


def _load_hub_model(model_id: str, entry: CatalogEntry | None, preset: str) -> ModelBundle:
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_id, trust_remote_code=False)
    family = family_of(config) or ("generic" if image_token_id(config) is not None else None)
    if family is None:
        raise ModelLoadError(f"{model_id} is a {config.model_type!r} model without an image token; supported "
                             f"architectures: {sorted(FAMILY_OF_MODEL_TYPE)}, or any image-text-to-text model with "
                             "an image token whose text model attends through transformers' AttentionInterface")
    if entry is not None and entry.family != family:
        raise ModelLoadError(f"{model_id} is listed as family {entry.family!r} but its config says "
                             f"{config.model_type!r}; the catalog entry is wrong")
    device, dtype, device_map = device_choice()
    model = AutoModelForImageTextToText.from_pretrained(model_id, config=config, dtype=dtype, device_map=device_map,
                                                        trust_remote_code=False)
    if device_map is None:
        model = model.to(device)
    try:
        processor = load_processor(model_id, "pixtral" if family == "pixtral" else config.model_type)
        return wrap(model, processor, family, name=model_id, preset=preset)
    except ValueError as error:  # a catalog entry that does not match the model
        raise ModelLoadError(str(error)) from error


def load_model(model_id: str, allow_any: bool = False, preset: str = "hub", how_to_allow: str = ALLOW_ANY_HINT
               ) -> ModelBundle:
    """Load an allow-listed model (any hub id or local folder of a supported architecture with allow_any=True).

    preset: "hub" (default) or "paper" (LLaVA-1.5 only: pad to square + vicuna_v1 prompt, as the VAR authors ran
    it), kept in `bundle.extra["preset"]`. how_to_allow: what the caller's user does to set allow_any (the app's and
    the eval CLI's flag), named when an id off the allow-list is refused. Raises ModelLoadError, never anything
    else, so the app can report it and keep its current model.
    """
    model_id = (model_id or "").strip()
    if not model_id:
        raise ModelLoadError("no model id given")
    entry = CATALOG.get(model_id)
    if entry is None and not allow_any:
        raise ModelLoadError(f"{shown(model_id)} is not on the allow-list of {len(CATALOG)} models (the Model list; "
                             f"README 'Supported models'); {how_to_allow}")
    try:
        if entry is not None and entry.family == "default":
            if preset != "hub":
                raise ModelLoadError(f"preset {preset!r} does not apply to the default model (trained with its own "
                                     f'chat template); use preset "hub"')
            from var_core.models.default import load_default_model  # lazily: written separately, heavy

            return load_default_model()
        return _load_hub_model(model_id, entry, preset)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 — every failure becomes one message the UI can show
        raise explain_load_error(model_id, exc) from exc
