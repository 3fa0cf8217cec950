"""φ(x), sink masks and sink-dimension discovery (paper Eq. 1)."""

import math

import pytest
import torch

from var_core.sink import discover_sink_dims, phi, sink_mask


def test_phi_matches_hand_computation():
    x = torch.tensor([3.0, -4.0, 0.0, 0.0])  # RMS = sqrt((9 + 16) / 4) = 2.5
    assert phi(x, [1]).item() == pytest.approx(4.0 / 2.5, rel=1e-6)
    assert phi(x, [0, 1]).item() == pytest.approx(1.6, rel=1e-6)  # max(|3|, |-4|) / 2.5
    assert phi(x, [0]).item() == pytest.approx(1.2, rel=1e-6)


def test_phi_of_zero_vector_is_zero_not_nan():
    assert phi(torch.zeros(2, 3, 8), [0, 5]).eq(0).all()


def test_phi_reaches_sqrt_d_bound_for_one_hot():
    x = torch.zeros(576)
    x[507] = 24900.0
    assert phi(x, [507]).item() == pytest.approx(math.sqrt(576), rel=1e-4)


def test_phi_is_float32_for_half_input_and_keeps_leading_shape():
    hidden = torch.randn(2, 7, 16, dtype=torch.bfloat16)
    values = phi(hidden, (3,))
    assert values.dtype == torch.float32 and values.shape == (2, 7)


def test_phi_rejects_out_of_range_dims():
    with pytest.raises(ValueError, match="out of range"):
        phi(torch.randn(4, 8), [8])
    with pytest.raises(ValueError, match="empty"):
        phi(torch.randn(4, 8), [])


def test_sink_mask_is_strictly_greater_than_tau():
    hidden = torch.ones(1, 3, 4)
    hidden[0, 0, 2] = 10.0  # φ = 10 / sqrt((100 + 3) / 4)
    value = 10.0 / math.sqrt(103 / 4)
    assert sink_mask(hidden, [2], tau=value - 1e-3).tolist() == [[True, False, False]]
    assert sink_mask(hidden, [2], tau=value + 1e-3).tolist() == [[False, False, False]]


def test_discover_sink_dims_finds_planted_massive_dims():
    torch.manual_seed(0)
    layers = [torch.randn(2, 20, 64) for _ in range(8)]
    for layer in layers[2:]:  # massive from layer 2 on, on the first token, dims 41 (strong) and 7
        layer[:, 0, 41] = 300.0
        layer[:, 0, 7] = -120.0
    layers[1][:, 3, 12] = 500.0  # a one-layer outlier must not win
    assert discover_sink_dims(layers, top_k=2) == [41, 7]
    assert discover_sink_dims(torch.stack(layers), top_k=1) == [41]


@pytest.mark.parametrize("planted", [(41,), (41, 7), (41, 7, 30), (3, 9, 20, 33, 50)])
def test_discovery_keeps_as_many_dims_as_stand_out(planted):
    """One, two, three or five massive dims (of decreasing strength, all far above the rest) are all found (φ ≤ √D:
    D = 1024 leaves five massive dims room above the noise)."""
    torch.manual_seed(0)
    layers = [torch.randn(2, 20, 1024) for _ in range(8)]
    for layer in layers[1:]:
        for rank, dim in enumerate(planted):
            layer[:, 0, dim] = 300.0 / (1 + 0.3 * rank)
    assert discover_sink_dims(layers) == list(planted)
