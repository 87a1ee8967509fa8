"""The convergence rule: stop on tol, on a plateau (patience windows without beating the
best window by rtol), or at max_iters; safe for objectives that go negative."""

import pytest
import torch

from insr_hpc.pde.optimize import minimize


def _run(offset: float, **kw):
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    res = minimize([w], lambda g: (w**2).sum() + offset, torch.Generator(), lr=0.1, **kw)
    return res, w


@pytest.mark.parametrize("offset", [0.0, -5.0])  # a residual (≥ 0) and an energy (< 0)
def test_plateau_stops_before_max_iters_at_the_minimum(offset):
    res, w = _run(offset, max_iters=5000, tol=0.0, rtol=1e-4, window=25, patience=2)
    assert res.iterations < 5000 and res.iterations % 25 == 0  # stopped by the plateau rule
    assert w.detach().abs().max().item() < 1e-2
    assert res.final_loss == pytest.approx(offset, abs=1e-3)


def test_tol_and_max_iters():
    res, _ = _run(0.0, max_iters=5000, tol=1e-2, rtol=0.0, window=25)
    assert res.losses[-1] < 1e-2 and all(v >= 1e-2 for v in res.losses[:-1])
    res, _ = _run(0.0, max_iters=7, tol=0.0, rtol=0.0, window=25)
    assert res.iterations == 7


def test_one_spike_does_not_end_the_optimisation():
    """A window spoiled by a spike is not 'no progress' while patience lasts."""
    w = torch.nn.Parameter(torch.tensor([3.0]))
    calls = {"n": 0}

    def loss(_):
        calls["n"] += 1
        spike = 100.0 if 26 <= calls["n"] <= 30 else 0.0
        return (w**2).sum() + spike

    res = minimize([w], loss, torch.Generator(), lr=0.05, max_iters=2000, tol=0.0, rtol=1e-3, window=25, patience=2)
    assert res.iterations > 75
