# %% [markdown]
# # Visual Sink Lens in a notebook
# Load a model → analyze an image → the app's pictures → save and reload the Trace. Every cell runs as it is in
# Jupyter or VS Code (`# %%` cells); `python docs/notebook.py` runs it top to bottom and writes the pictures to
# `$NOTEBOOK_OUT` (default `notebook_pictures/`). `tests/test_notebook.py` runs it, so it stays true.

# %%
import os
from pathlib import Path

from PIL import Image

from var_core import examples
from var_core.analysis import analyze
from var_core.config import VARConfig
from var_core.explain import explain
from var_core.models import load_default_model
from var_core.trace import Trace
from viz.evidence import phi_by_layer
from viz.grid import head_grid
from viz.heatmap import attention_heatmap
from viz.ranking import head_ranking
from viz.sinks import phi_overlay

# %% [markdown]
# ## 1. A model
# The embedded default model runs on any CPU. For your own checkpoint, load it with transformers and wrap it:
# ```python
# from transformers import AutoModelForImageTextToText, AutoProcessor
# from var_core.models import wrap
# model = AutoModelForImageTextToText.from_pretrained("path/or/hub-id", dtype="auto", device_map="auto")
# bundle = wrap(model, AutoProcessor.from_pretrained("path/or/hub-id"))  # sink dims: registry, else discovered
# ```

# %%
bundle = load_default_model()
image = examples.image("demo_three_shapes")  # the shipped examples: examples.names()
prompt = "What colour is the square?"

# %% [markdown]
# ## 2. Analyze: the same question without and with VAR
# In a notebook the last line shows both answers, the facts of the VAR run and attention before / after VAR.

# %%
analysis = analyze(bundle, image, prompt, VARConfig(p=0.4, rho=0.5), max_new_tokens=8)
trace = analysis.var
analysis

# %% [markdown]
# ## 3. The app's tabs as pictures (each view is a pure function of the Trace)

# %%
layer = 5
heatmap = attention_heatmap(trace, layer, None, "answer")  # Attention
heatmap

# %%
grid = head_grid(trace, "answer")  # Layer × head grid: image-centric heads framed
grid

# %%
sinks, phi_layers = phi_overlay(trace, layer), phi_by_layer(trace)  # Sinks φ(x)
phi_layers

# %%
ranking = head_ranking(trace, "answer")  # Head ranking
ranking

# %% [markdown]
# ## 4. Where did it look? Four maps of the first answer token, here with VAR

# %%
explanation = explain(bundle, image, prompt, VARConfig())
explanation

# %% [markdown]
# ## 5. Save the Trace (pickle-free .npz) and load it back

# %%
out = Path(os.environ.get("NOTEBOOK_OUT", "notebook_pictures"))
out.mkdir(parents=True, exist_ok=True)
trace.save(out / "trace_var.npz")
reloaded = Trace.load(out / "trace_var.npz")
print(reloaded.answer, reloaded.summary()["heads"][:2])

# %%
for name, view in {"heatmap": heatmap, "head_grid": grid, "phi_overlay": sinks, "phi_by_layer": phi_layers,
                   "head_ranking": ranking}.items():
    if isinstance(view, Image.Image):
        view.save(out / f"{name}.png")
    else:  # a matplotlib Figure
        view.savefig(out / f"{name}.png")
print("pictures in", out)
