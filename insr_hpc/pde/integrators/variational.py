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

from dataclasses import dataclass

import torch

from insr_hpc.pde.integrators.base import INTEGRATORS, Integrator
from insr_hpc.pde.terms import PotentialTerm


@INTEGRATORS.register("variational")
class VariationalEuler(Integrator):
    @dataclass
    class Params:
        name: str = "variational"

    history_needed = 2
    accepts = PotentialTerm

    def energy_density(self, term: PotentialTerm, new, history, X: torch.Tensor, dt: float) -> torch.Tensor:
        """measure · (inertia + potential) density at one reference point X (d,): scalar."""
        prev = history[0]
        prev2 = history[1] if len(history) > 1 else history[0]
        predicted = (2 * prev(X) - prev2(X)).detach()  # φⁿ + Δt vⁿ
        phi = new(X)
        inertia = term.mass(X) / (2 * dt**2) * ((phi - predicted) ** 2).sum(-1)
        return term.measure * (inertia + term.density(new, X))

    def objective(self, term, new, history, x, dt):
        return torch.func.vmap(lambda X: self.energy_density(term, new, history, X, dt))(x).mean()
