"""Time integrators: turn a case's right-hand side into one step's residual.

For first-order evolution ∂u/∂t = F(u) a case supplies ``Term.rhs(field_fn, x)``
(F evaluated on any field, differentiable in x); an integrator combines the trainable
field ``new`` and the frozen previous fields into a per-sample residual whose mean
square is the step objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from insr_hpc.pde.case import FieldFn
from insr_hpc.registry import Registry

INTEGRATORS: Registry = Registry("integrator", "integrator.name")
INTEGRATORS.default = "midpoint"


@dataclass
class Term:
    """∂u/∂t = rhs(u)(x): ``rhs(field_fn, x)`` returns (N, k) given points x (N, d)
    that require grad."""

    rhs: Callable[[FieldFn, torch.Tensor], torch.Tensor]


class Integrator:
    Params: type
    history_needed: int = 1

    def __init__(self, params):
        self.params = params

    def residual(self, term: Term, new: FieldFn, history: list[FieldFn], x: torch.Tensor, dt: float) -> torch.Tensor:
        """Per-sample residual (N, k); zero where ``new`` is the integrator's next state."""
        raise NotImplementedError

    def objective(self, term: Term, new: FieldFn, history: list[FieldFn], x: torch.Tensor, dt: float) -> torch.Tensor:
        r = self.residual(term, new, history, x, dt)
        return (r**2).sum(dim=1).mean()
