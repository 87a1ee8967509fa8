"""What a PDE case provides, and the registry of cases.

A case owns its fields (one neural field per unknown), domain samplers, residual
pieces and reference solution; an integrator (``pde/integrators``) turns those into
one step's objective. Neither names the other: a case exposes ``Term`` objects and
``step_problems``; an integrator exposes ``objective``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from insr_hpc.pde.cases import CASES  # noqa: F401  (declared there, torch-free; ``packable``: see Case.pack_values)
from insr_hpc.pde.terms import Energy, PointFn, Residual, Term, is_least_squares

FieldFn = Callable[[torch.Tensor], torch.Tensor]  # points (N, d) → values (N, k)


@dataclass(frozen=True)
class FieldSpec:
    in_dim: int
    out_dim: int


@dataclass
class SubProblem:
    """One optimisation inside a time step: which field is optimised, and its objective
    as a sum of per-sample terms (:mod:`insr_hpc.pde.terms`): residuals (least
    squares) and/or energies. The trainable field enters the terms as a per-point
    function, so an optimiser may evaluate them at any parameters it likes."""

    name: str
    field: str
    terms: list[Residual | Energy]
    prepare: Callable[[], None] | None = None  # called right before it is optimised (e.g. snapshots)
    # Also consider the field's weights at step n (the last committed step) as the warm
    # start: the solver keeps whichever of those and the current weights has the lower
    # objective on one batch. For a sub-problem whose answer lies nearer uⁿ than the
    # previous sub-problem's output (Euler's projection undoes most of the advection).
    warm_from_previous: bool = False

    @property
    def least_squares(self) -> bool:
        return is_least_squares(self.terms)


@dataclass
class StepContext:
    """What a case sees when it builds a step's sub-problems."""

    step: int  # the step being computed (≥ 1)
    t: float  # its time
    dt: float
    current: dict[str, torch.nn.Module]  # the fields being optimised (trainable modules)
    history: list[dict[str, PointFn]]  # frozen per-point fields: history[0] = step n, [1] = n−1 …
    integrator: Any
    n_interior: int
    n_boundary: int
    device: torch.device


class Case:
    """Base class. Subclasses set ``Params``, ``fields``, ``substeps`` and implement the rest."""

    Params: type
    fields: dict[str, FieldSpec]
    initial_substeps: tuple[str, ...] = ("fit",)  # sub-problem names of step 0
    substeps: tuple[str, ...] = ("advance",)  # sub-problem names of every later step
    history_needed: int = 1  # how many previous steps the step objective uses
    # The kind of term its steps hand to the integrator (``Term`` for ∂u/∂t = F(u),
    # ``PotentialTerm`` for incremental potentials); None: the case ignores the
    # integrator (e.g. Euler's operator splitting). Checked against the integrator's
    # ``accepts`` when the config is validated.
    term_kind: type | None = Term
    integrator: Any = None  # the run's integrator object (the solver sets it): for scheme-aware references
    # Packed sweeps (``launch.pack``, :mod:`insr_hpc.pde.pack`): a case registered
    # ``packable`` (``@CASES.register(name, packable=True)``) has terms that read
    # nothing but their arguments, the history fields, ``ctx.dt`` and ``self.params``
    # (never ``ctx.current`` or ``prepare`` hooks), so k runs can be evaluated under one
    # ``vmap``. ``pack_values``: the ``problem`` keys that may differ between the runs
    # of one pack (numbers entering the terms; they become per-run tensors inside the
    # vmap). Other problem keys must agree.
    pack_values: tuple[str, ...] = ()

    def __init__(self, params: Any, dt: float):
        self.params = params
        self.dt = dt

    def with_values(self, values: dict[str, Any]) -> "Case":
        """A shallow copy whose ``params`` take ``values`` (possibly tensors under a
        vmap over runs). Samplers and references of the copy are not used."""
        out = copy.copy(self)
        out.params = dataclasses.replace(self.params, **values)
        return out

    # sampling ----------------------------------------------------------------
    def sample_interior(self, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def sample_boundary(self, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    # objectives --------------------------------------------------------------
    def initial_problems(self, current: dict[str, torch.nn.Module], n_interior: int, n_boundary: int, device) -> list[SubProblem]:
        """Step 0: fit the initial condition."""
        raise NotImplementedError

    def step_problems(self, ctx: StepContext) -> list[SubProblem]:
        raise NotImplementedError

    # output ------------------------------------------------------------------
    def output_coords(self, resolution: int) -> dict[str, np.ndarray]:
        """Coordinate arrays of the stored grid (name → 1-D array)."""
        raise NotImplementedError

    def output_vars(self, resolution: int) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], dict]]:
        """Per-step stored fields: name → (dims after ``step``, shape after step, attrs)."""
        raise NotImplementedError

    time_now: float = 0.0  # the time of the step being evaluated (the workload sets it before ``evaluate``)

    def static_vars(self, resolution: int) -> dict[str, tuple[tuple[str, ...], str, dict, np.ndarray]]:
        """Arrays written once with the store: name → (dims, dtype, attrs, data)."""
        return {}

    def extra_attrs(self) -> dict[str, Any]:
        """Store attributes describing the case's geometry (JSON-serialisable)."""
        return {}

    def evaluate(self, fields: dict[str, FieldFn], resolution: int, device) -> dict[str, np.ndarray]:
        """The stored fields of one step, on the output grid."""
        raise NotImplementedError

    error_names: tuple[str, ...] = ("rel_l2", "max_err")

    def reference(self, t: float, resolution: int) -> dict[str, np.ndarray]:
        """Reference fields at time ``t`` on the output grid (stored beside the outputs).

        Called in increasing step order, from the first step a run (or its resumption)
        computes: a grid-solver reference advances itself to ``t`` (without sampling the
        steps in between), so a resumed run does not replay the steps already done."""
        raise NotImplementedError

    def errors(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, float]:
        """Errors of one step's outputs against its reference."""
        raise NotImplementedError

    def baseline_errors(self, n_params: int, step: int, reference: dict[str, np.ndarray]) -> dict[str, float]:
        """Errors of the case's classical solver at the memory of ``n_params`` network
        weights, at step ``step`` against ``reference`` (the stored reference fields of
        that step): what the report sets beside INSR. None by default."""
        return {}

    def figure(self, outputs: dict[str, np.ndarray], t: float, resolution: int):
        """A matplotlib figure of the step vs the reference, or None."""
        return None
