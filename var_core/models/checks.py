"""`wrap`'s checks of the arguments that do not depend on the catalog: each error names the argument and what it
expects, before any model work."""

from __future__ import annotations

import numbers
import operator

import torch

from var_core.inputs import shown
from var_core.registry import validate_tau


def check_model(model) -> None:
    """TypeError unless `model` is a loaded transformers model (a torch Module whose config names its type)."""
    if isinstance(model, torch.nn.Module) and getattr(getattr(model, "config", None), "model_type", None):
        return
    hint = (f" {shown(model)}: load it first (transformers.AutoModelForImageTextToText.from_pretrained) or load an id "
            "with var_core.models.catalog.load_model" if isinstance(model, str) else "")
    raise TypeError(f"wrap(model=…) expects a loaded transformers model (a torch.nn.Module with a .config naming its "
                    f"model_type), got {type(model).__name__}{hint}")


def check_processor(processor) -> None:
    """TypeError unless `processor` is a multimodal processor: callable, with a tokenizer and an image processor."""
    missing = [part for part in ("tokenizer", "image_processor") if getattr(processor, part, None) is None]
    if processor is not None and callable(processor) and not missing:
        return
    got = ("None" if processor is None else f"a {type(processor).__name__}, which has no {' and no '.join(missing)}"
           if missing else f"a {type(processor).__name__}, which is not callable")
    raise TypeError(f"wrap(processor=…) expects the model's multimodal processor, with a tokenizer and an "
                    f"image_processor (transformers.AutoProcessor.from_pretrained(<the model's folder or id>)); "
                    f"got {got}")


def checked_sink_dims(sink_dims, hidden_size: int) -> tuple[int, ...] | None:
    """`sink_dims` as a tuple of distinct dimension indices in [0, hidden_size), or None; else a TypeError or
    ValueError naming the argument and what it expects."""
    if sink_dims is None:
        return None
    try:
        values = list(sink_dims) if not isinstance(sink_dims, (str, bytes)) else None
        dims = tuple(operator.index(d) for d in values if not isinstance(d, bool))  # TypeError for None, floats
    except TypeError:
        values, dims = None, ()
    if values is None or len(dims) != len(values):  # not a list, or a bool / float / text among the dims
        raise TypeError(f"wrap(sink_dims=…) expects a list of dimension indices (integers) such as [1415, 2533], "
                        f"got {shown(sink_dims)}")
    bad = sorted({d for d in dims if not 0 <= d < hidden_size})
    if not dims or bad or len(set(dims)) != len(dims):
        raise ValueError(f"wrap(sink_dims={list(dims)}) must name at least one dimension, each once, in [0, "
                         f"{hidden_size}) (the text model's hidden size)" + (f"; {bad} are outside" if bad else "")
                         + "; leave it out to use the registry's or discover them")
    return dims


def check_tau(tau, hidden_size: int) -> None:
    """TypeError / ValueError unless `tau` is None or a number in (0, √hidden_size), naming the argument."""
    if tau is None:
        return
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"wrap(tau=…) expects a number (the φ threshold), got {shown(tau)}")
    try:
        validate_tau(float(tau), hidden_size)
    except ValueError as error:
        raise ValueError(f"wrap(tau=…): {error}") from None
