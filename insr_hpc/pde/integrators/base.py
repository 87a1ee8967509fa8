"""Time integrators: turn a case's right-hand side into one step's residual.

For first-order evolution ∂u/∂t = F(u) a case supplies a :class:`Term` (F at one point
for any per-point field); an integrator combines the trainable field ``new`` and the
frozen previous fields into a per-point residual in *rate form*,
r = (u⁺ − uⁿ)/Δt − F(·), whose mean square over the samples is the step objective (the
INSR paper's scaling: boundary penalties keep their weight whatever Δt is).

An integrator declares the kind of term it accepts (``accepts``), so a case × integrator
pairing that cannot work is refused when the config is validated.
"""

from __future__ import annotations


import torch

from insr_hpc.pde.integrators import INTEGRATORS  # noqa: F401  (declared there, torch-free)
from insr_hpc.pde.terms import PointFn, PotentialTerm, Residual, Term

__all__ = ["INTEGRATORS", "Integrator", "PotentialTerm", "Term"]


class Integrator:
    Params: type
    history_needed: int = 1
    accepts: type = Term  # the term kind this integrator turns into an objective

    def __init__(self, params):
        self.params = params

    def step_terms(self, term, field_map, history: list[PointFn], sample, dt: float, name: str = "pde") -> list:
        """The one seam between a case and an integrator: the step objective's terms.

        ``term``: what the case exposes (a :class:`Term` or :class:`PotentialTerm`);
        ``field_map(net)``: the per-point unknown built from the trainable field (the
        identity for most cases; a deformation map X + s(X)·w(X) for elasticity);
        ``history``: the frozen per-point unknowns of steps n, n−1, …; ``sample(gen)``:
        the sampler of the term's points. First-order integrators give one
        :class:`Residual`, the rate-form residual of :meth:`residual`."""
        return [Residual(name, sample, lambda net, x: self.residual(term, field_map(net), history, x, dt))]

    def amplification(self, z):
        """The per-step factor of a linear mode u' = −z/Δt · u, z = λΔt (for scheme-aware
        references, e.g. advection's semi-discrete solution); None if not defined."""
        raise NotImplementedError(f"{type(self).__name__} defines no amplification factor")

    def residual(self, term: Term, new: PointFn, history: list[PointFn], x: torch.Tensor, dt: float) -> torch.Tensor:
        """Residual at one point x (d,), shape (k,); zero where ``new`` is the next state."""
        raise NotImplementedError

    def objective(self, term: Term, new: PointFn, history: list[PointFn], x: torch.Tensor, dt: float) -> torch.Tensor:
        """Mean square of the residual over a batch of points x (N, d) (for checks and plots)."""
        r = torch.func.vmap(lambda y: self.residual(term, new, history, y, dt))(x)
        return (r**2).sum(dim=1).mean()
