"""Model loading: every loader returns a `ModelBundle` that `var_core.run.generate` accepts."""

from var_core.models.bundle import Adapter, ModelBundle, PreparedInputs
from var_core.models.default import load_default_model

__all__ = ["Adapter", "ModelBundle", "PreparedInputs", "load_default_model"]
