"""Explicit Euler, implicit Euler and the implicit midpoint rule."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from insr_hpc.pde.integrators.base import INTEGRATORS, Integrator, Term


def _reuse_at(fn, x: torch.Tensor, value: torch.Tensor):
    """``fn`` that returns the already computed ``value`` when called at the same points
    ``x`` (saves a network evaluation per term; derivatives still flow through it)."""
    return lambda y: value if y is x else fn(y)


@INTEGRATORS.register("explicit_euler")
class ExplicitEuler(Integrator):
    """u⁺ = uⁿ + Δt F(uⁿ). First order; conditionally stable."""

    @dataclass
    class Params:
        name: str = "explicit_euler"

    def residual(self, term: Term, new, history, x, dt):
        prev = history[0]
        u_prev = prev(x)
        target = u_prev + dt * term.rhs(_reuse_at(prev, x, u_prev), x)
        return new(x) - target.detach()


@INTEGRATORS.register("implicit_euler")
class ImplicitEuler(Integrator):
    """u⁺ − Δt F(u⁺) = uⁿ. First order; dissipative, unconditionally stable."""

    @dataclass
    class Params:
        name: str = "implicit_euler"

    def residual(self, term: Term, new, history, x, dt):
        u_new = new(x)
        return u_new - dt * term.rhs(_reuse_at(new, x, u_new), x) - history[0](x).detach()


@INTEGRATORS.register("midpoint")
class Midpoint(Integrator):
    """u⁺ = uⁿ + Δt F((u⁺ + uⁿ)/2). Second order; energy-conserving for linear F."""

    @dataclass
    class Params:
        name: str = "midpoint"

    def residual(self, term: Term, new, history, x, dt):
        prev = history[0]
        u_new, u_prev = new(x), prev(x)

        def mid(y: torch.Tensor) -> torch.Tensor:
            return 0.5 * (u_new + u_prev) if y is x else 0.5 * (new(y) + prev(y))

        return u_new - u_prev.detach() - dt * term.rhs(mid, x)
