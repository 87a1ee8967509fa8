"""SIREN's initialisation keeps activations arcsine-distributed at every depth."""

import math

import pytest
import torch

from insr_hpc.fields import build_model
from insr_hpc.fields.siren import Siren


def test_weight_bounds_follow_the_siren_scheme():
    torch.manual_seed(0)
    p = Siren.Params(depth=3, width=256, omega0=30.0, omega0_hidden=30.0)
    net = build_model(p, 2, 1)
    first = net.hidden[0].linear.weight
    assert first.abs().max() <= 1 / 2 + 1e-7
    assert first.std().item() == pytest.approx((1 / 2) / math.sqrt(3), rel=0.1)  # U(-a, a): std a/√3
    bound = math.sqrt(6 / 256) / 30
    for layer in list(net.hidden)[1:]:
        w = layer.linear.weight
        assert w.abs().max() <= bound + 1e-7
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_activations_stay_arcsine_distributed_through_depth():
    """sin of the SIREN pre-activations has variance 1/2 (arcsine on [-1, 1]) at every layer."""
    torch.manual_seed(1)
    net = build_model(Siren.Params(depth=5, width=512), 1, 1)
    h = torch.rand(4096, 1) * 2 - 1
    with torch.no_grad():
        for layer in net.hidden:
            pre = layer.omega * layer.linear(h)
            h = torch.sin(pre)
            assert h.var().item() == pytest.approx(0.5, abs=0.05)
            if layer is not net.hidden[0]:
                # hidden pre-activations are ~N(0, 2) by the paper's argument (std ≈ 1.41)
                assert pre.std().item() == pytest.approx(math.sqrt(2), rel=0.15)
