"""The process's loaded model: one at a time, switched on request, kept when a switch fails, and one thread that
does all of its work.

Why one thread: PyTorch's CPU ops run on OpenMP, and every thread that runs them gets its own OpenMP team. Once a
second thread has run torch ops, the two teams contend for the cores for the rest of the process: measured on 2
cores, a 32-token answer took 2.7 s on the loading thread alone and 4.0 s once a second thread had run one (the
same holds for any small op). Web servers answer requests on pooled worker threads, so every load and every run
goes through `call` / `submit`, which execute on the slot's single model thread.
"""

from __future__ import annotations

import gc
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Callable, TypeVar

from var_core.models.bundle import ModelBundle
from var_core.models.catalog import APP_ALLOW_ANY_HINT, DEFAULT_MODEL_ID, ModelLoadError, load_model, set_preset
from var_core.models.common import paper_preset_problem

T = TypeVar("T")


class ModelSlot:
    """Holds the current ModelBundle. `get(id)` returns it, loading (and replacing) it only when the id changes;
    a failed load raises ModelLoadError and leaves the previous model in place. Loads and runs happen one at a
    time on the slot's model thread."""

    def __init__(self, loader=None, allow_any: bool = False, preset: str = "hub"):
        self._loader = loader or partial(load_model, how_to_allow=APP_ALLOW_ANY_HINT)  # the app's words for allow_any
        self.allow_any = allow_any
        self.preset = preset  # "paper": LLaVA-1.5 models run as the VAR authors ran them; every other model "hub"
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._thread_id = self._thread.submit(threading.get_ident).result()
        self._bundle: ModelBundle | None = None
        self._model_id: str | None = None
        self.loads = 0  # how many loads happened: the second request must not pay for one

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future:
        """Run `fn(*args, **kwargs)` on the model thread, after the work queued before it."""
        return self._thread.submit(fn, *args, **kwargs)

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """`submit` and wait for the result; runs inline when already on the model thread."""
        if threading.get_ident() == self._thread_id:
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    @property
    def current_id(self) -> str | None:
        return self._model_id

    @property
    def current(self) -> ModelBundle:
        """The loaded model, loading the default one if none is loaded yet."""
        return self._bundle if self._bundle is not None else self.get(DEFAULT_MODEL_ID)

    def get(self, model_id: str) -> ModelBundle:
        return self.call(self._load, model_id)

    def _load(self, model_id: str) -> ModelBundle:
        if self._bundle is not None and model_id == self._model_id:
            return self._bundle
        bundle = self._loader(model_id, allow_any=self.allow_any)
        if self.preset != "hub" and paper_preset_problem(bundle) is None:
            set_preset(bundle, self.preset)
        self.loads += 1
        self._bundle, self._model_id = bundle, model_id
        gc.collect()
        return bundle


__all__ = ["ModelSlot", "ModelLoadError"]
