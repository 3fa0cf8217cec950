"""Model loading: every loader returns a `ModelBundle` that `var_core.run.generate` accepts."""

from var_core.models.bundle import Adapter, ModelBundle, PreparedInputs

__all__ = ["Adapter", "ModelBundle", "PreparedInputs"]
