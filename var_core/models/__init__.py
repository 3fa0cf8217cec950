"""Model loading: every loader returns a `ModelBundle` that `var_core.run.generate` accepts; `wrap` makes one of a
model you loaded yourself."""

from var_core.models.bundle import Adapter, ModelBundle, PreparedInputs
from var_core.models.catalog import wrap
from var_core.models.default import load_default_model

__all__ = ["Adapter", "ModelBundle", "PreparedInputs", "load_default_model", "wrap"]
