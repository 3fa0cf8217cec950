"""The pre-softmax interventions — PAI, VAF, masking visual tokens — by hand, against slow references written from
the papers' formulas, and through `generate` on the tiny LLaVA, where each must change something."""

import numpy as np
import pytest
import torch

from var_core.config import VARConfig
from var_core.interventions.base import Site
from var_core.interventions.masking import MaskTokens, tokens_to_mask
from var_core.interventions.pai import PAI
from var_core.interventions.vaf import VAF
from var_core.run import generate

PROMPT = "what colour is the square ?"


def site(queries: int = 3, keys: int = 8) -> Site:
    """Keys: 0–1 system prompt, 2–4 the image, 5–7 text; the last `queries` rows, the first of them not acted on."""
    visual = torch.zeros(keys, dtype=torch.bool)
    visual[2:5] = True
    rows = torch.ones(queries, dtype=torch.bool)
    rows[0] = False
    return Site(layer=3, rows=rows, visual=visual, system=torch.arange(keys) < 2)


def scores(queries: int = 3, keys: int = 8, heads: int = 2) -> torch.Tensor:
    return torch.linspace(-2.0, 2.0, heads * queries * keys).reshape(1, heads, queries, keys)


def test_pai_amplifies_the_predicting_rows_image_scores_by_alpha_of_their_size():
    before = scores()
    after = PAI(alpha=0.5).scores(site(), before.clone())
    expected = before.clone()
    expected[:, :, -1, 2:5] = before[:, :, -1, 2:5] + 0.5 * before[:, :, -1, 2:5].abs()  # LALBJ/PAI attention.py
    assert torch.equal(after, expected)
    assert torch.equal(after[:, :, :-1], before[:, :, :-1]) and torch.equal(after[..., 5:], before[..., 5:])


def test_pai_acts_in_its_layers_only_and_alpha_zero_is_off():
    pai = PAI(start_layer=2, end_layer=4)
    assert [pai.acts_on_scores(layer) for layer in range(5)] == [False, False, True, True, False]
    assert not PAI(alpha=0.0).acts_on_scores(5)
    with pytest.raises(ValueError, match=r"alpha=-1 must be a number in \[0, 10\]"):
        PAI(alpha=-1)
    with pytest.raises(ValueError, match="start_layer"):
        PAI(start_layer=40).check(32)


def reference_vaf(scores: torch.Tensor, site: Site, enh: float, sup: float) -> torch.Tensor:
    """ClearSight's formula row by row and key by key."""
    out = scores.clone()
    for q in range(scores.shape[2]):
        for k in range(scores.shape[3]):
            if site.rows[q]:
                out[:, :, q, k] *= enh if site.visual[k] else (sup if site.system[k] else 1.0)
    return out


def test_vaf_scales_image_and_system_scores_of_the_rows_after_the_image():
    before = torch.randn(1, 3, 3, 8, generator=torch.Generator().manual_seed(0))
    after = VAF(enh_para=1.15, sup_para=0.95).scores(site(), before.clone())
    assert torch.equal(after, reference_vaf(before, site(), 1.15, 0.95))
    assert torch.equal(after[:, :, 0], before[:, :, 0])  # a row before the text after the image: untouched
    assert after[0, 0, 1, 2] == pytest.approx(1.15 * before[0, 0, 1, 2].item())
    assert [VAF().acts_on_scores(layer) for layer in (8, 9, 14, 15)] == [False, True, True, False]
    assert not VAF(enh_para=1.0, sup_para=1.0).acts_on_scores(10)
    with pytest.raises(ValueError, match="end_layer"):
        VAF(start_layer=9, end_layer=15).check(12)


def test_masking_removes_the_keys_for_the_acted_on_rows_only():
    before = scores()
    after = MaskTokens([3, 6]).scores(site(), before.clone())
    low = torch.finfo(before.dtype).min
    assert (after[:, :, 1:, [3, 6]] == low).all() and torch.equal(after[:, :, 0], before[:, :, 0])
    keep = [k for k in range(8) if k not in (3, 6)]
    assert torch.equal(after[..., keep], before[..., keep])
    with pytest.raises(ValueError, match="at least one"):
        MaskTokens([])


def test_pai_through_generate_changes_the_answer_distribution_in_its_layers(tiny_bundle, noise_image):
    baseline = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=3)
    pai = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=3, intervention=PAI(alpha=2.0, start_layer=1,
                                                                                          end_layer=3, gamma=1.0))
    changed = np.abs(pai.top_probs - baseline.top_probs).max(-1) > 1e-6
    assert changed.sum() > 0  # it acted: some decoding step's distribution moved
    assert pai.settings["intervention"] == {"method": "pai", "alpha": 2.0, "start_layer": 1, "end_layer": 3,
                                            "gamma": 1.0}
    # captured attention: the last prompt row's image share rises in an amplified layer, layer 0 is bit-identical
    last = baseline.n_prompt - 1 - baseline.query_positions[0]
    assert np.array_equal(pai.attn_to_visual[0, :, last], baseline.attn_to_visual[0, :, last])
    assert pai.visual_mass[1, :, last].sum() > baseline.visual_mass[1, :, last].sum()


def test_vaf_through_generate_moves_attention_to_the_image(tiny_bundle, noise_image):
    baseline = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2)
    vaf = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2,
                   intervention=VAF(enh_para=3.0, sup_para=0.2, start_layer=1, end_layer=3))
    rows = slice(None)
    assert np.array_equal(vaf.visual_mass[0], baseline.visual_mass[0])  # layer 0 untouched
    moved = np.abs(vaf.visual_mass[1:3, :, rows] - baseline.visual_mass[1:3, :, rows]) > 1e-6
    assert moved.sum() > 0


def test_masking_the_sinks_and_a_random_set_of_the_same_size(tiny_bundle, noise_image):
    first = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2, measure=VARConfig(tau=1.0))
    strongest = first.phi_visual[list(VARConfig().resolve_layers(first.num_layers))].max(0)
    measure = VARConfig(tau=float(np.quantile(strongest, 0.8)))  # a fifth of the visual tokens are sinks
    baseline = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2, measure=measure)
    sinks, label = tokens_to_mask(baseline, "sinks")
    random, random_label = tokens_to_mask(baseline, "random", seed=1)
    assert len(sinks) == len(random) > 0 and not set(sinks) & set(random) and "sinks" in label
    masked = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2, measure=measure,
                      intervention=MaskTokens(sinks, label))
    columns = np.isin(masked.visual_positions, sinks)
    assert (masked.attn_to_visual[..., columns] == 0).all()  # no acted-on row attends to a masked key
    assert (baseline.attn_to_visual[..., columns] > 0).any()
    reference = generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2, measure=measure, mask_positions=sinks)
    assert np.array_equal(masked.attn_to_visual, reference.attn_to_visual)  # the paper's Fig. 3b masking
    assert tokens_to_mask(baseline, "patch", patch=3)[0].tolist() == [int(baseline.visual_positions[3])]
    with pytest.raises(ValueError, match="one of"):
        tokens_to_mask(baseline, "everything")


def test_an_intervention_runs_only_inside_its_own_run(tiny_bundle, noise_image):
    calls = []

    class Counting(VAF):
        def scores(self, s, values):
            calls.append(s.layer)
            return super().scores(s, values)

    generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2, intervention=Counting(start_layer=1, end_layer=2))
    after_run = len(calls)
    assert after_run > 0 and set(calls) == {1}
    generate(tiny_bundle, noise_image, PROMPT, max_new_tokens=2)  # the next run has no intervention
    assert len(calls) == after_run


def test_the_registry_builds_every_method_with_its_papers_defaults_and_runs_it(tiny_bundle, noise_image):
    from var_core.interventions.registry import METHODS, build, run_method

    assert build("baseline") is None and build("var").p == 0.4
    assert build("vaf").settings() == {"method": "vaf", "enh_para": 1.15, "sup_para": 0.95, "start_layer": 9,
                                       "end_layer": 15}
    with pytest.raises(ValueError, match="PAI takes alpha, start_layer, end_layer, gamma; not beta"):
        build("pai", beta=1.0)
    with pytest.raises(ValueError, match="unknown method 'opera'"):
        build("opera")
    for name, chosen in METHODS.items():
        assert chosen.paper and chosen.acts_on and chosen.cost, name
    trace = run_method(tiny_bundle, noise_image, PROMPT, "pai", {"start_layer": 1, "end_layer": 3, "gamma": 1.0},
                       max_new_tokens=2)
    assert trace.settings["method"]["method"] == "pai" and trace.settings["method"]["end_layer"] == 3
    assert run_method(tiny_bundle, noise_image, PROMPT, "var", max_new_tokens=2).settings["method"]["p"] == 0.4


def test_the_readme_table_lists_every_registered_method():
    from pathlib import Path

    from var_core.interventions.registry import METHODS

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = readme[readme.index("## Other fixes beside VAR"):]
    table = section[section.index("| method | changes |"):].split("\n\n")[0]
    listed = {line.split("|")[1].strip().strip("`") for line in table.splitlines()[2:]}
    assert listed == set(METHODS) - {"baseline"}
