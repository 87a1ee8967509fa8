"""Variational implicit Euler (incremental potential) for second-order dynamics
ρ φ̈ = −δΠ/δφ, Π the case's potential energy.

The step is θⁿ⁺¹ = argmin ∫ ρ/(2Δt²)|φ − 2φⁿ + φⁿ⁻¹|² + π(φ) dX, whose stationarity
condition is ρ(φ − 2φⁿ + φⁿ⁻¹)/Δt² = −δΠ/δφ: backward Euler on position and velocity
(first order, dissipative, unconditionally stable). A case supplies a
:class:`PotentialTerm`: the potential density π(φ)(X) (elastic energy, external work,
penalties) and the mass density; this integrator adds the inertia term and integrates.
With one previous step only (step 1), φⁿ⁻¹ = φⁿ: the body starts at rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from insr_hpc.errors import InsrError
from insr_hpc.pde.integrators.base import INTEGRATORS, Integrator


@dataclass
class PotentialTerm:
    """What a variational case exposes.

    ``density(phi, X)``: potential energy per unit reference volume (N,) at points X
    (N, d) that require grad, for the deformation map ``phi`` (N, d) → (N, d).
    ``mass(X)``: mass density ρ (N,). ``measure``: volume of the reference domain, so
    measure · mean over uniform samples is the integral.
    """

    density: Callable[[Callable, torch.Tensor], torch.Tensor]
    mass: Callable[[torch.Tensor], torch.Tensor]
    measure: float

    def rhs(self, field, x):  # called by first-order integrators: say what to use instead
        raise InsrError("integrator.name: this case is a variational (incremental-potential) problem; use 'variational'")


@INTEGRATORS.register("variational")
class VariationalEuler(Integrator):
    @dataclass
    class Params:
        name: str = "variational"

    history_needed = 2

    def objective(self, term, new, history, x, dt):
        if not isinstance(term, PotentialTerm):
            raise InsrError("integrator.name: 'variational' needs a case with an incremental potential")
        prev = history[0]
        prev2 = history[1] if len(history) > 1 else history[0]
        with torch.no_grad():
            predicted = 2 * prev(x) - prev2(x)  # φⁿ + Δt vⁿ
        phi = new(x)
        inertia = term.mass(x) / (2 * dt**2) * ((phi - predicted) ** 2).sum(1)
        return term.measure * (inertia + term.density(new, x)).mean()
