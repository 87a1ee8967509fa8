"""Explicit Euler, implicit Euler and the implicit midpoint rule (per-point residuals in
rate form, see :mod:`insr_hpc.pde.integrators.base`)."""

from __future__ import annotations


from insr_hpc.pde.integrators.base import INTEGRATORS, Integrator, Term
from insr_hpc.pde.integrators.params import ExplicitEulerParams, ImplicitEulerParams, MidpointParams


@INTEGRATORS.register("explicit_euler")
class ExplicitEuler(Integrator):
    """u⁺ = uⁿ + Δt F(uⁿ). First order; conditionally stable."""

    Params = ExplicitEulerParams

    def amplification(self, z):
        return 1 - z

    def residual(self, term: Term, new, history, x, dt):
        prev = history[0]
        return (new(x) - prev(x).detach()) / dt - term.rhs(prev, x).detach()


@INTEGRATORS.register("implicit_euler")
class ImplicitEuler(Integrator):
    """u⁺ − Δt F(u⁺) = uⁿ. First order; dissipative, unconditionally stable."""

    Params = ImplicitEulerParams

    def amplification(self, z):
        return 1 / (1 + z)

    def residual(self, term: Term, new, history, x, dt):
        return (new(x) - history[0](x).detach()) / dt - term.rhs(new, x)


@INTEGRATORS.register("midpoint")
class Midpoint(Integrator):
    """u⁺ = uⁿ + Δt F((u⁺ + uⁿ)/2). Second order; energy-conserving for linear F."""

    Params = MidpointParams

    def amplification(self, z):
        return (1 - z / 2) / (1 + z / 2)

    def residual(self, term: Term, new, history, x, dt):
        prev = history[0]

        def mid(y):
            return 0.5 * (new(y) + prev(y))

        return (new(x) - prev(x).detach()) / dt - term.rhs(mid, x)
