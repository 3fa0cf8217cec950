"""Experiments scored by the answer: pope (VAR off/on), ablate (paper Tables 4–5), sweep (p × ρ × τ), mask (Fig. 3b).

Each condition is one greedy generation per sample with `capture=False` (the hook's fast path), parsed to yes/no.
"""

from __future__ import annotations

import random

import numpy as np

from var_core.config import VARConfig
from var_core.eval.metrics import binary_metrics, bootstrap_interval, mean_std, parse_yes_no, wilson_interval
from var_core.eval.plots import error_bars, heatmap, metric_bars
from var_core.eval.runner import Experiment
from var_core.run import generate

TOP_PHI_STORED = 8
PAPER_POPE = {"model": "LLaVA-1.5-7B (paper, METHOD.md §3)", "f1_baseline": 85.90, "f1_var": 86.53}


def answer(bundle, sample, settings: dict, done: dict) -> dict:
    """Generate under `settings` ({"var": VARConfig kwargs or None, "tau", "max_new_tokens", "mask"...})."""
    config = VARConfig(**settings["var"]) if settings.get("var") else None
    measure = VARConfig(tau=settings.get("tau"), layers=settings.get("layers"))
    if config is not None and not settings.get("mask") and _var_is_inert(bundle, config, done.get("VAR off")):
        return {**done["VAR off"], "inert": True}
    image = sample.image()
    mask_positions, n_masked = None, 0
    if settings.get("mask"):
        mask_positions = _mask_positions(bundle, sample, image, settings, done)
        n_masked = len(mask_positions)
        if not mask_positions and config is None:
            return {**done["no mask"], "n_masked": 0}  # nothing to mask: the unmasked run, bit for bit
    trace = generate(bundle, image, sample.question, config=config, capture=False, measure=measure,
                     max_new_tokens=settings["max_new_tokens"], mask_positions=mask_positions or None)
    layers = list((config or measure).resolve_layers(bundle.num_layers))
    image_tokens = trace.image_token_positions
    phi_visual = trace.phi[layers][:, image_tokens]  # [L_var, N_img]
    sinks = np.nonzero((phi_visual > trace.settings["tau"]).any(0))[0]
    top = np.argsort(-phi_visual.max(0), kind="stable")[:TOP_PHI_STORED]
    return {"answer": trace.answer, "pred": parse_yes_no(trace.answer), "visual_sinks": sinks.tolist(),
            "top_phi": top.tolist(), "max_visual_phi": float(phi_visual.max()), "n_masked": n_masked}


def _var_is_inert(bundle, config: VARConfig, baseline: dict | None) -> bool:
    """True when VAR provably changes nothing: head selection on, and no visual token of the baseline run has
    φ > τ in any VAR layer (a layer without visual sinks selects no head; visual tokens come before the text, so
    VAR cannot change their φ). The baseline's answer is then VAR's answer, bit for bit. The baseline measured
    φ over the same layers (`settings["layers"]`, shared by every condition of an experiment)."""
    if baseline is None or not config.select_heads:
        return False
    tau = config.tau if config.tau is not None else bundle.backbone.tau
    return baseline["max_visual_phi"] <= tau


def _mask_positions(bundle, sample, image, settings, done) -> list[int]:
    """Token positions to mask: the sink set of the unmasked run, or as many random other visual tokens."""
    base = done["no mask"]
    image_tokens = bundle.adapter.prepare(bundle, image, sample.question).visual_positions.tolist()
    chosen = base["visual_sinks"] if settings["rule"] == "tau" else base["top_phi"][:settings["k"]]
    if settings["mask"] == "random":
        others = [i for i in range(len(image_tokens)) if i not in set(chosen)]
        chosen = random.Random(f"{settings['seed']}|{sample.id}").sample(others, min(len(chosen), len(others)))
    return [image_tokens[i] for i in sorted(chosen)]


def _var(opts, **override) -> dict:
    return {"p": opts["p"], "rho": opts["rho"], "tau": opts["tau"], "layers": opts["layers"], **override}


def _common(opts) -> dict:
    return {"tau": opts["tau"], "max_new_tokens": opts["max_new_tokens"], "layers": opts["layers"]}


def _answer_rows(records: list[dict], opts: dict, conditions: list[str] | None = None) -> list[dict]:
    """One row per condition: POPE metrics + how many answers changed vs the first condition."""
    names = conditions or list(dict.fromkeys(r["condition"] for r in records))
    by_condition = {name: [r for r in records if r["condition"] == name] for name in names}
    reference = {r["sample_id"]: r["answer"] for r in by_condition[names[0]]}
    rows = []
    for name in names:
        group = [r for r in by_condition[name] if r["label"] in ("yes", "no")]
        row = {"condition": name, **binary_metrics([r["label"] for r in group], [r["pred"] for r in group])}
        row.update(_intervals(row, group, [r for r in by_condition[names[0]] if r["label"] in ("yes", "no")],
                              names[0] if name != names[0] else None))
        row["changed_vs_" + names[0].replace(" ", "_")] = float(np.mean(
            [r["answer"] != reference[r["sample_id"]] for r in by_condition[name]])) if by_condition[name] else 0.0
        row["images_with_visual_sinks"] = float(np.mean([bool(r["visual_sinks"]) for r in by_condition[name]]))
        row["var_inert"] = float(np.mean([bool(r.get("inert")) for r in by_condition[name]]))  # provably no-op
        rows.append(row)
    return rows


def _intervals(row: dict, group: list[dict], reference: list[dict], reference_name: str | None) -> dict:
    """95 % intervals of a condition's row: accuracy (Wilson), F1 (bootstrap over questions) and, against the
    reference condition on the same questions, the paired bootstrap intervals of the accuracy and F1 differences."""
    labels, preds = [r["label"] for r in group], [r["pred"] for r in group]
    out = {"accuracy_ci95": list(wilson_interval(row["tp"] + row["tn"], row["n"])),
           "f1_ci95": list(bootstrap_interval(lambda idx: binary_metrics([labels[i] for i in idx],
                                                                         [preds[i] for i in idx])["f1"], len(group)))}
    if reference_name is None:
        return out
    base = {r["sample_id"]: r["pred"] for r in reference}
    paired = [(r["label"], r["pred"], base[r["sample_id"]]) for r in group if r["sample_id"] in base]

    def difference(metric):
        def statistic(idx):
            picked = [paired[i] for i in idx]
            return (binary_metrics([l for l, _, _ in picked], [p for _, p, _ in picked])[metric]
                    - binary_metrics([l for l, _, _ in picked], [b for _, _, b in picked])[metric])
        return statistic

    key = reference_name.replace(" ", "_")
    for metric in ("accuracy", "f1"):
        out[f"{metric}_minus_{key}_ci95"] = list(bootstrap_interval(difference(metric), len(paired)))
    return out


# --- pope -------------------------------------------------------------------------------------------------------

def pope_conditions(opts):
    return [("VAR off", {**_common(opts), "var": None}), ("VAR on", {**_common(opts), "var": _var(opts)})]


def pope_plots(rows, records, opts):
    return {"pope_metrics": metric_bars(rows, f"yes/no existence, VAR off vs on (p={opts['p']}, ρ={opts['rho']}, "
                                              f"n={rows[0]['n']})")}


POPE = Experiment("pope", "yes/no object existence, VAR off vs on", pope_conditions, answer,
                  lambda records, opts: _answer_rows(records, opts), pope_plots)


# --- ablate -----------------------------------------------------------------------------------------------------

def ablate_conditions(opts):
    common = _common(opts)
    return [("VAR off", {**common, "var": None}),
            ("VAR (paper)", {**common, "var": _var(opts)}),
            ("no head selection", {**common, "var": _var(opts, select_heads=False)}),
            ("budget to text", {**common, "var": _var(opts, budget_to="text")})]


ABLATE = Experiment("ablate", "VAR with/without head selection (Table 4), budget to visual/text (Table 5)",
                    ablate_conditions, answer, lambda records, opts: _answer_rows(records, opts),
                    lambda rows, records, opts: {"ablate_metrics": metric_bars(rows, f"ablations (p={opts['p']}, "
                                                                               f"ρ={opts['rho']}, n={rows[0]['n']})")})


# --- sweep ------------------------------------------------------------------------------------------------------

def _tau_label(tau) -> str:
    return "τ=registry" if tau is None else f"τ={tau:g}"


def sweep_conditions(opts):
    common = _common(opts)
    conditions = [("VAR off", {**common, "var": None})]
    for tau in opts["taus"]:
        for rho in opts["rhos"]:
            for p in opts["ps"]:
                conditions.append((f"p={p:g} ρ={rho:g} {_tau_label(tau)}",
                                   {**common, "tau": tau, "var": _var(opts, p=p, rho=rho, tau=tau)}))
    return conditions


def sweep_rows(records, opts):
    rows = _answer_rows(records, opts)
    settings = {name: s for name, s in sweep_conditions(opts)}
    for row in rows:
        var = settings[row["condition"]]["var"]
        row.update({"p": None, "rho": None, "tau": None} if var is None else
                   {"p": var["p"], "rho": var["rho"], "tau": var["tau"]})
    return rows


def sweep_plots(rows, records, opts):
    off = rows[0]["f1"]
    figures = {}
    for k, tau in enumerate(opts["taus"]):
        matrix = [[next(r["f1"] for r in rows[1:] if r["p"] == p and r["rho"] == rho and r["tau"] == tau)
                   for p in opts["ps"]] for rho in opts["rhos"]]
        figures[f"sweep_f1_tau{k}"] = heatmap(matrix, [f"{r:g}" for r in opts["rhos"]], [f"{p:g}" for p in opts["ps"]],
                                              f"F1 with VAR, {_tau_label(tau)} (VAR off: {off:.3f}, n={rows[0]['n']})",
                                              "p (fraction of sink attention moved)", "ρ (head selection)", centre=off)
    return figures


SWEEP = Experiment("sweep", "grid over p, ρ (and τ): F1 heatmaps", sweep_conditions, answer, sweep_rows, sweep_plots)


# --- mask -------------------------------------------------------------------------------------------------------

def mask_conditions(opts):
    common, rule = _common(opts), {"rule": opts["mask_rule"], "k": opts["k"]}
    conditions = [("no mask", {**common, "var": None}), ("sinks", {**common, "var": None, "mask": "sinks", **rule})]
    for seed in opts["seeds"]:
        conditions.append((f"random seed {seed}", {**common, "var": None, "mask": "random", "seed": seed, **rule}))
    return conditions


def mask_rows(records, opts):
    names = [name for name, _ in mask_conditions(opts)]
    rows = _answer_rows(records, opts, names)
    reference = {r["sample_id"]: r["pred"] for r in records if r["condition"] == "no mask"}
    for row in rows:
        group = [r for r in records if r["condition"] == row["condition"]]
        row["agreement_with_no_mask"] = float(np.mean([r["pred"] == reference[r["sample_id"]] for r in group]))
        row["mean_masked_tokens"] = float(np.mean([r["n_masked"] for r in group]))
        row["samples_masked"] = int(sum(r["n_masked"] > 0 for r in group))
    randoms = [row for row in rows if row["condition"].startswith("random")]
    summary = {"condition": f"random (mean ± std over {len(randoms)} seeds)"}
    for metric in ("accuracy", "f1", "agreement_with_no_mask"):
        summary[metric], summary[metric + "_std"] = mean_std([row[metric] for row in randoms])
    summary["n"] = rows[0]["n"]
    summary["mean_masked_tokens"] = randoms[0]["mean_masked_tokens"] if randoms else 0.0
    return rows + [summary]


def mask_plots(rows, records, opts):
    base, sinks, randoms = rows[0], rows[1], rows[-1]
    rule = "φ > τ" if opts["mask_rule"] == "tau" else f"top-{opts['k']} φ"
    title = (f"masking visual sinks ({rule}) vs as many random visual tokens\n"
             f"n={base['n']}, {sinks['mean_masked_tokens']:.2f} masked tokens per sample")
    masked = "sinks masked" if opts["mask_rule"] == "tau" else f"top-{opts['k']} φ masked"
    return {"mask_accuracy": error_bars(["no mask", masked, "random masked"],
                                        [base["accuracy"], sinks["accuracy"], randoms["accuracy"]],
                                        [0.0, 0.0, randoms["accuracy_std"]], title, "accuracy",
                                        reference=base["accuracy"]),
            "mask_agreement": error_bars([masked, "random masked"],
                                         [sinks["agreement_with_no_mask"], randoms["agreement_with_no_mask"]],
                                         [0.0, randoms["agreement_with_no_mask_std"]],
                                         "answers unchanged by the mask", "agreement with no mask")}


MASK = Experiment("mask", "masking visual sinks vs as many random visual tokens (Fig. 3b)", mask_conditions, answer,
                  mask_rows, mask_plots)
