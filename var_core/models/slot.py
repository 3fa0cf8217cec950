"""The process's loaded model: one at a time, switched on request, kept when a switch fails."""

from __future__ import annotations

import gc
import threading

from var_core.models.bundle import ModelBundle
from var_core.models.catalog import DEFAULT_MODEL_ID, ModelLoadError, load_model


class ModelSlot:
    """Holds the current ModelBundle. `get(id)` returns it, loading (and replacing) it only when the id changes;
    a failed load raises ModelLoadError and leaves the previous model in place."""

    def __init__(self, loader=load_model, allow_any: bool = False):
        self._loader = loader
        self.allow_any = allow_any
        self._lock = threading.Lock()
        self._bundle: ModelBundle | None = None
        self._model_id: str | None = None
        self.loads = 0  # how many loads happened: the second request must not pay for one

    @property
    def current_id(self) -> str | None:
        return self._model_id

    @property
    def current(self) -> ModelBundle:
        """The loaded model, loading the default one if none is loaded yet."""
        return self._bundle if self._bundle is not None else self.get(DEFAULT_MODEL_ID)

    def get(self, model_id: str) -> ModelBundle:
        with self._lock:
            if self._bundle is not None and model_id == self._model_id:
                return self._bundle
            bundle = self._loader(model_id, allow_any=self.allow_any)
            self.loads += 1
            self._bundle, self._model_id = bundle, model_id
            gc.collect()
            return bundle


__all__ = ["ModelSlot", "ModelLoadError"]
