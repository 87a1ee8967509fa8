"""Variational implicit Euler (incremental potential) for second-order dynamics
ρ φ̈ = −δΠ/δφ, Π the case's potential energy.

The step is θⁿ⁺¹ = argmin ∫ ρ/(2Δt²)|φ − 2φⁿ + φⁿ⁻¹|² + π(φ) dX, whose stationarity
condition is ρ(φ − 2φⁿ + φⁿ⁻¹)/Δt² = −δΠ/δφ: backward Euler on position and velocity
(first order, dissipative, unconditionally stable). A case supplies a
:class:`~insr_hpc.pde.terms.PotentialTerm`: the potential density π(φ)(X) (elastic
energy, external work, penalties) and the mass density; this integrator adds the
inertia term. The objective is an energy, not a sum of squares: Newton or L-BFGS.
With one previous step only (step 1), φⁿ⁻¹ = φⁿ: the body starts at rest.
"""

from __future__ import annotations


import torch

from insr_hpc.ops import value_and_grad_at
from insr_hpc.pde.integrators.base import INTEGRATORS, Integrator
from insr_hpc.pde.integrators.params import VariationalEulerParams
from insr_hpc.pde.terms import Energy, PotentialTerm


@INTEGRATORS.register("variational")
class VariationalEuler(Integrator):
    Params = VariationalEulerParams

    history_needed = 2
    accepts = PotentialTerm

    def step_terms(self, term: PotentialTerm, field_map, history, sample, dt: float, name: str = "incremental_potential"):
        """One :class:`Energy`: measure · (inertia + potential) density; for a term with a
        local density it carries its (φ, ∇φ) split, the Gauss–Newton curvature."""
        def density(net, X):
            return self.energy_density(term, field_map(net), history, X, dt)

        parts = self.energy_parts(term, history, dt)
        if parts is None:
            return [Energy(name, sample, density)]
        inner, outer = parts
        return [Energy(name, sample, density, inner=lambda net, X: inner(field_map(net), X), outer=outer)]

    def energy_density(self, term: PotentialTerm, new, history, X: torch.Tensor, dt: float) -> torch.Tensor:
        """measure · (inertia + potential) density at one reference point X (d,): scalar."""
        parts = self.energy_parts(term, history, dt)
        if parts is not None:  # one evaluation of φ and ∇φ for both parts
            inner, outer = parts
            return outer(inner(new, X), X)
        phi, potential = new(X), term.density(new, X)
        return term.measure * (self._inertia(term, history, phi, X, dt) + potential)

    def energy_parts(self, term: PotentialTerm, history, dt: float):
        """(inner, outer) with energy_density = outer(inner(new, X), X), for a term with a
        local density: inner = (φ, ∇φ) flattened (d + d²,), outer their energy density
        (what Gauss–Newton curvature needs); None otherwise."""
        if term.local is None:
            return None

        def inner(new, X):
            phi, F = value_and_grad_at(new, X)
            return torch.cat([phi, F.flatten(-2)], -1)

        def outer(y, X):
            d = X.shape[-1]
            phi, F = y[..., :d], y[..., d:].unflatten(-1, (d, d))
            return term.measure * (self._inertia(term, history, phi, X, dt) + term.local(phi, F, X))

        return inner, outer

    @staticmethod
    def _inertia(term, history, phi, X, dt):
        prev = history[0]
        prev2 = history[1] if len(history) > 1 else history[0]
        with torch.no_grad():
            at_prev = prev(X)
            predicted = at_prev if prev2 is prev else 2 * at_prev - prev2(X)  # φⁿ + Δt vⁿ
        return term.mass(X) / (2 * dt**2) * ((phi - predicted) ** 2).sum(-1)

    def objective(self, term, new, history, x, dt):
        return torch.func.vmap(lambda X: self.energy_density(term, new, history, X, dt))(x).mean()
