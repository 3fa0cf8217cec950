"""Probes of the sinks themselves: contribution (paper Fig. 3c) and sinks (are positions fixed across questions?).

Both need only the prefill (one forward, `max_new_tokens=1`). `contribution` reads each attention module's
input and post-softmax weights with forward hooks of its own (nothing is added to the hot path).
"""

from __future__ import annotations

import itertools
import random
from contextlib import contextmanager

import numpy as np
import torch

from var_core.config import VARConfig
from var_core.eval.metrics import jaccard
from var_core.eval.plots import grid_map, result_figure, scatter, sized
from var_core.eval.runner import Experiment
from var_core.run import generate


def _layers(bundle, opts) -> list[int]:
    return list(VARConfig(layers=opts.get("layers")).resolve_layers(bundle.num_layers))


@contextmanager
def attention_inputs(modules: dict[int, torch.nn.Module]):
    """Record, per layer, the first call's attention input hidden states and returned weights [B, H, Q, K]."""
    seen: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for layer, module in modules.items():
        def pre(mod, args, kwargs, layer=layer):
            seen.setdefault(("hidden", layer), kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

        def post(mod, args, kwargs, output, layer=layer):
            seen.setdefault(("weights", layer), output[1])
        handles += [module.register_forward_pre_hook(pre, with_kwargs=True),
                    module.register_forward_hook(post, with_kwargs=True)]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def contribution_vectors(module, hidden: torch.Tensor, weights: torch.Tensor, rows, keys) -> torch.Tensor:
    """Σ_h α^h_ij · v^h_j W_O^h: what key j adds to the attention output at query i, [Q, N, D] (paper Fig. 3c).

    hidden: [T, D] attention input (after the input norm); weights: [H, T, T] post-softmax, as the model used them;
    rows: query indices; keys: key indices. Summed over all keys it is the attention block's output (o_proj bias
    aside).
    """
    heads, head_dim = weights.shape[0], module.head_dim
    values = module.v_proj(hidden).view(hidden.shape[0], -1, head_dim).transpose(0, 1)  # [KVH, T, hd]
    values = values.repeat_interleave(heads // values.shape[0], dim=0)  # repeat_kv: head h uses kv head h // rep
    w_o = module.o_proj.weight.view(-1, heads, head_dim).permute(1, 2, 0)  # [H, hd, D]
    projected = torch.einsum("hkd,hde->hke", values[:, keys].float(), w_o.float())  # [H, N, D]
    return torch.einsum("hqn,hne->qne", weights[:, rows][:, :, keys].float(), projected)


def token_contribution(module, hidden, weights, rows, keys) -> tuple[torch.Tensor, torch.Tensor]:
    """(contribution ‖Σ_h α·v·W_O‖, attention α) per key [N], each the mean over query rows (α also over heads)."""
    contribution = contribution_vectors(module, hidden, weights, rows, keys).norm(dim=-1).mean(0)
    return contribution, weights[:, rows][:, :, keys].float().mean((0, 1))


# --- contribution -----------------------------------------------------------------------------------------------

def contribution_compute(bundle, sample, settings, done) -> dict:
    layers = settings["layers"]
    decoder = bundle.adapter.decoder_layers(bundle.model)
    with attention_inputs({layer: decoder[layer].self_attn for layer in layers}) as seen:
        # capturing these layers makes the hook compute their explicit attention weights (other layers run sdpa)
        trace = generate(bundle, sample.image(), sample.question, capture_layers=layers, max_new_tokens=1,
                         measure=VARConfig(tau=settings["tau"]))
    keys = torch.as_tensor(trace.image_token_positions)
    rows = torch.arange(int(keys.max()) + 1, trace.n_prompt)
    out = {"layers": layers, "tau": trace.settings["tau"], "phi": [], "attention": [], "contribution": []}
    with torch.no_grad():
        for layer in layers:
            module = decoder[layer].self_attn
            contribution, attention = token_contribution(module, seen[("hidden", layer)][0],
                                                         seen[("weights", layer)][0], rows, keys)
            out["phi"].append(np.round(trace.phi[layer][trace.image_token_positions], 3).tolist())
            out["attention"].append([float(f"{v:.4g}") for v in attention.tolist()])
            out["contribution"].append([float(f"{v:.4g}") for v in contribution.tolist()])
    return out


def _groups(record, opts):
    """Per (layer): index sets of visual sinks, top-k φ, random others (seeded), all visual tokens."""
    rng = random.Random(f"{opts['seeds'][0]}|{record['sample_id']}")
    for layer_index, phi in enumerate(record["phi"]):
        phi = np.asarray(phi)
        top = np.argsort(-phi, kind="stable")[:opts["k"]]
        others = [i for i in range(len(phi)) if i not in set(top.tolist())]
        yield layer_index, {"visual sinks (φ > τ)": np.nonzero(phi > record["tau"])[0],
                            f"top-{opts['k']} φ": top,
                            f"random {opts['k']} (not top-φ)": np.array(rng.sample(others, min(opts["k"], len(others)))),
                            "all visual": np.arange(len(phi))}


def contribution_rows(records, opts):
    sums: dict[str, list] = {}
    for record in records:
        for layer_index, groups in _groups(record, opts):
            attention = np.asarray(record["attention"][layer_index])
            contribution = np.asarray(record["contribution"][layer_index])
            for name, index in groups.items():
                entry = sums.setdefault(name, [[], [], []])
                entry[0] += attention[index].tolist()
                entry[1] += contribution[index].tolist()
                entry[2] += np.asarray(record["phi"][layer_index])[index].tolist()
    rows = []
    for name, (attention, contribution, phi) in sums.items():
        mean_a = float(np.mean(attention)) if attention else float("nan")
        mean_c = float(np.mean(contribution)) if contribution else float("nan")
        rows.append({"tokens": name, "token_layer_pairs": len(attention), "mean_phi": float(np.mean(phi)) if phi else float("nan"),
                     "mean_attention": mean_a, "mean_contribution": mean_c,
                     "contribution_per_attention": mean_c / mean_a if attention and mean_a > 0 else float("nan")})
    return rows


@sized
def contribution_plots(rows, records, opts):
    figure = result_figure()
    labels = [row["tokens"] for row in rows]
    for k, (metric, title) in enumerate((("mean_attention", "attention weight α (text → token)"),
                                         ("mean_contribution", "contribution ‖α·v·W_O‖"))):
        axes = figure.add_subplot(1, 2, k + 1)
        values = [row[metric] for row in rows]
        bars = axes.bar(range(len(rows)), values, color=["#d62728", "#ff7f0e", "#1f77b4", "#888888"][:len(rows)])
        axes.bar_label(bars, fmt="%.3g", fontsize=9)
        axes.set_xticks(range(len(rows)), labels, rotation=35, fontsize=9, ha="right", rotation_mode="anchor")
        axes.set_title(title.replace(" (", "\n("), fontsize=10)
    figure.suptitle(f"per visual token, mean over text queries,\nlayers and {len(records)} samples")
    phi, contribution, attention = [], [], []
    for record in records:
        for layer_index in range(len(record["phi"])):
            phi += record["phi"][layer_index]
            contribution += record["contribution"][layer_index]
            attention += record["attention"][layer_index]
    tau = records[0]["tau"] if records else 0
    sinks = np.asarray(phi) > tau
    return {"contribution_bars": figure,
            "contribution_phi_scatter": scatter(phi, contribution, f"φ vs contribution (τ = {tau:g})", "φ(x)",
                                                "‖α·v·W_O‖", highlight=sinks, log_y=True),
            "attention_phi_scatter": scatter(phi, attention, f"φ vs attention (τ = {tau:g})", "φ(x)", "α",
                                             highlight=sinks, log_y=True)}


def contribution_conditions(opts):
    return [("prefill", {"probe": "contribution", "tau": opts["tau"], "layers": opts["layers_resolved"]})]


CONTRIBUTION = Experiment("contribution", "attention contribution of sink vs random visual tokens (Fig. 3c)",
                          contribution_conditions, contribution_compute, contribution_rows, contribution_plots)


# --- sinks ------------------------------------------------------------------------------------------------------

def sinks_compute(bundle, sample, settings, done) -> dict:
    trace = generate(bundle, sample.image(), sample.question, capture=False, max_new_tokens=1,
                     measure=VARConfig(tau=settings["tau"]))
    phi = trace.phi[settings["layers"]][:, trace.image_token_positions]  # [L_var, N]
    return {"tau": trace.settings["tau"], "grid": list(trace.grid), "layers": settings["layers"],
            "sinks": [np.nonzero(row > trace.settings["tau"])[0].tolist() for row in phi],
            "top": [np.argsort(-row, kind="stable")[:settings["k"]].tolist() for row in phi],
            "phi_max": np.round(phi.max(0), 3).tolist()}


def _pairs(record, name) -> set:
    return {(layer, index) for layer, indices in enumerate(record[name]) for index in indices}


def _chance(sets, size: int, seed: int = 0, draws: int = 50) -> float:
    """Mean Jaccard of random sets with the same per-layer sizes (what overlap to expect by luck)."""
    rng, values = random.Random(seed), []
    for a, b in itertools.combinations(sets, 2):
        for _ in range(draws):
            ra = {(layer, i) for layer, n in a for i in rng.sample(range(size), n)}
            rb = {(layer, i) for layer, n in b for i in rng.sample(range(size), n)}
            values.append(jaccard(ra, rb))
    return float(np.mean(values)) if values else float("nan")


def sinks_rows(records, opts):
    by_image: dict[str, list] = {}
    for record in records:
        by_image.setdefault(record["image_id"], []).append(record)
    rows = []
    size = len(records[0]["phi_max"]) if records else 0
    for name, label in (("sinks", "visual sinks (φ > τ)"), ("top", f"top-{opts['k']} φ per layer")):
        within = [jaccard(_pairs(a, name), _pairs(b, name)) for group in by_image.values()
                  for a, b in itertools.combinations(group, 2)]
        firsts = [group[0] for group in by_image.values()]
        across = [jaccard(_pairs(a, name), _pairs(b, name)) for a, b in itertools.combinations(firsts, 2)]
        sizes = [[(layer, len(indices)) for layer, indices in enumerate(r[name])] for r in firsts]
        mean_size = float(np.mean([len(_pairs(r, name)) for r in records])) if records else 0.0
        for comparison, values in (("same image, different questions", within), ("different images", across)):
            rows.append({"set": label, "comparison": comparison, "mean_jaccard": float(np.mean(values)) if values
                         else float("nan"), "pairs": len(values), "mean_set_size": mean_size})
        rows.append({"set": label, "comparison": "chance (random sets, same sizes)",
                     "mean_jaccard": _chance(sizes[:12], size), "pairs": len(list(itertools.combinations(sizes[:12], 2))),
                     "mean_set_size": mean_size})
    deltas = [float(np.max(np.abs(np.subtract(a["phi_max"], b["phi_max"])))) for group in by_image.values()
              for a, b in itertools.combinations(group, 2)]
    rows.append({"set": "φ of visual tokens", "comparison": "same image, different questions: max |Δφ|",
                 "mean_jaccard": float("nan"), "pairs": len(deltas), "max_abs_delta_phi": max(deltas) if deltas else float("nan"),
                 "mean_set_size": float("nan")})
    return rows


@sized
def sinks_plots(rows, records, opts):
    figure = result_figure()
    axes = figure.add_subplot()
    jaccard_rows = [row for row in rows if row["comparison"] != rows[-1]["comparison"]]
    labels = [f"{row['set']}\n{row['comparison']}" for row in jaccard_rows]
    values = [0 if np.isnan(row["mean_jaccard"]) else row["mean_jaccard"] for row in jaccard_rows]
    bars = axes.barh(range(len(values)), values, color=["#2ca02c", "#1f77b4", "#888888"] * 2)
    axes.bar_label(bars, labels=[f"{row['mean_jaccard']:.3f}\n({row['pairs']} pairs)" for row in jaccard_rows],
                   fontsize=9)
    axes.set_yticks(range(len(values)), labels, fontsize=9)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.3)
    axes.set_xlabel("mean Jaccard overlap of\n(layer, visual token) sets")
    figure.suptitle("are sink positions fixed?")
    figures = {"sinks_overlap": figure}
    if records:
        rows_, cols = records[0]["grid"]
        firsts = {r["image_id"]: r for r in records}.values()
        for name, title in (("sinks", "visual sink (φ > τ, any VAR layer)"), ("top", f"top-{opts['k']} φ (any layer)")):
            counts = np.zeros(rows_ * cols)
            for record in firsts:
                counts[sorted({i for indices in record[name] for i in indices})] += 1
            figures[f"sinks_grid_{name}"] = grid_map(counts.reshape(rows_, cols) / len(firsts),
                                                     f"{title}: share of {len(firsts)} images", "share of images")
    return figures


def sinks_conditions(opts):
    return [("prefill", {"probe": "sinks", "tau": opts["tau"], "k": opts["k"], "layers": opts["layers_resolved"]})]


SINKS = Experiment("sinks", "sink positions across questions on the same image, and across images", sinks_conditions,
                   sinks_compute, sinks_rows, sinks_plots, dataset="multi")
