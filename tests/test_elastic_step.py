"""The fast elastic step: SIREN's forward-mode Jacobian against autograd, the elastic
energy and its weight gradient on both derivative paths, the sin/cos node's double
backward, and Gauss–Newton-curvature Newton–CG against a closed-form minimum."""

import pytest
import torch

from insr_hpc.catalog import load_config
from insr_hpc.fields.siren import Siren, sincos
from insr_hpc.ops import batch_mode, reverse_jacobians, value_and_grad_at
from insr_hpc.pde.case import SubProblem
from insr_hpc.pde.optimizers import OPTIMIZERS
from insr_hpc.pde.optimizers.base import Reducer
from insr_hpc.pde.solver import Solver
from insr_hpc.pde.terms import Energy, draw, module_point_fn, objective
from insr_hpc.runtime import RunEnv


@pytest.mark.parametrize("depth,scale", [(1, 1.0), (2, 1.0), (3, 2.5)])
def test_siren_forward_jacobian_equals_autograd(depth, scale):
    torch.manual_seed(depth)
    net = Siren(Siren.Params(depth=depth, width=16, omega0=5.0, omega0_hidden=30.0, output_scale=scale), 2, 3)
    x = torch.rand(64, 2, dtype=torch.float64) * 2 - 1
    net = net.double()
    y, jac = net.value_and_jacobian(x)
    ref = torch.autograd.functional.jacobian(lambda p: net(p[None])[0], x[5])
    assert torch.allclose(y, net(x), atol=1e-12)
    assert torch.allclose(jac[5], ref, atol=1e-10)
    assert jac.shape == (64, 3, 2)
    # a batch of one point, leading dimensions kept
    y1, j1 = net.value_and_jacobian(x[:1].reshape(1, 1, 2))
    assert j1.shape == (1, 1, 3, 2) and torch.allclose(j1[0, 0], jac[0], atol=1e-12)


def test_sincos_backward_and_double_backward():
    z = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sincos, (z,))
    assert torch.autograd.gradgradcheck(sincos, (z,))


def _elastic_problem(scenario="sag"):
    cfg = load_config("configs/elasticity.yaml", [f"problem.scenario={scenario}", "time.dt=0.05", "sampling.interior=256"])
    s = Solver(cfg, RunEnv(torch.device("cpu")))
    with torch.no_grad():  # a visibly deformed bar (not the rest shape: F ≠ I)
        for p in s.models["phi"].parameters():
            p.mul_(3.0)
    w = s.flat_weights()
    s.push_history(w)
    s.push_history(w * 0.9)  # two different previous steps: the inertia term sees a velocity
    return s, s.problems(2)[0]


@pytest.mark.parametrize("scenario", ["sag", "stretch"])
def test_elastic_energy_and_gradient_equal_on_both_derivative_paths(scenario):
    s, sp = _elastic_problem(scenario)
    net = s.models["phi"]
    field = module_point_fn(net)
    batches = draw(sp.terms, torch.Generator().manual_seed(0))

    def value_and_grad():
        net.zero_grad()
        loss = objective(sp.terms, field, batches)
        loss.backward()
        return float(loss.detach()), torch.cat([p.grad.reshape(-1) for p in net.parameters()])

    fwd_loss, fwd_grad = value_and_grad()
    with reverse_jacobians():
        rev_loss, rev_grad = value_and_grad()
    assert fwd_loss == pytest.approx(rev_loss, rel=1e-5)
    assert torch.allclose(fwd_grad, rev_grad, rtol=1e-4, atol=1e-5 * float(rev_grad.abs().max()))
    # the split the Newton step uses is the same density: outer(inner(φ)) == fn(φ)
    term = sp.terms[0]
    with batch_mode():
        split = term.outer(term.inner(field, batches[0]), batches[0]).mean()
        whole = term.fn(field, batches[0]).mean()
    assert float(split) == pytest.approx(float(whole), rel=1e-6)
    # and ∇φ of the deformation map (fixed left end: φ = X + (X/L) w) against autograd
    X = batches[0][:5]
    phi = s.case.deformation(field)
    with batch_mode():
        _, F = value_and_grad_at(phi, X)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda p: phi(p[None])[0], X[i]) for i in range(5)])
    assert torch.allclose(F, ref, atol=1e-5)


class _Linear(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(d))

    def forward(self, a):
        return (a @ self.w)[..., None]


def test_gauss_newton_curvature_newton_reaches_a_quadratic_minimum():
    """E(w) = mean_i (½ yᵢ² − yᵢ bᵢ), yᵢ = w·aᵢ (y linear in w, so G is the exact Hessian):
    minimum at the least-squares solution; fresh subsets of the batch for the curvature."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(400, 4, generator=g)
    b = A @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.3 * torch.randn(400, generator=g)
    data = torch.cat([A, b[:, None]], 1)
    model = _Linear(4)

    def fn(f, row):
        y = f(row[..., :4])[..., 0]
        return 0.5 * y**2 - y * row[..., 4]

    term = Energy("e", lambda gen: data, fn, inner=lambda f, row: f(row[..., :4]),
                  outer=lambda y, row: 0.5 * y[..., 0] ** 2 - y[..., 0] * row[..., 4])
    P = OPTIMIZERS.get("gauss_newton").Params
    opt = OPTIMIZERS.get("gauss_newton")(P(max_iters=4, rtol=0.0, hessian_samples=200, average=2, cg_iters=10))
    res = opt.minimize(model, SubProblem("e", "w", [term]), g, initial=False, reducer=Reducer())
    exact = torch.linalg.lstsq(A.double(), b.double()[:, None]).solution[:, 0]
    assert res.iterations == 6
    assert torch.allclose(model.w.double(), exact, atol=1e-3), (model.w, exact)
    assert res.final_loss == pytest.approx(float(fn(lambda a: (a.double() @ exact)[..., None], data.double()).mean()), rel=1e-5)
