"""What every optimiser shares: the registry, the result, and a module's parameters as
one flat vector that per-point fields can be evaluated at (``torch.func``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.func import functional_call

from insr_hpc.pde.case import SubProblem
from insr_hpc.pde.optimizers import OPTIMIZERS  # noqa: F401  (declared there, torch-free)


@dataclass
class MinimizeResult:
    iterations: int
    final_loss: float  # the objective at the returned parameters (as the optimiser measured it)
    losses: list[float] = field(default_factory=list)  # one value per iteration
    capped: bool = False  # stopped at its iteration cap, not by its convergence rule


@dataclass
class Reducer:
    """Sums across data-parallel ranks (identity when running alone)."""

    world_size: int = 1
    sum_tensor: Callable[[torch.Tensor], torch.Tensor] | None = None  # in-place all-reduce SUM
    reduce_grads: Callable[[list[torch.nn.Parameter]], None] | None = None  # averages .grad
    mean_scalar: Callable[[float], float] | None = None

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.sum_tensor is None or self.world_size == 1:
            return t
        t = t.contiguous().clone()
        self.sum_tensor(t)
        return t

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.sum(t) / self.world_size if self.world_size > 1 else t


class ParamVector:
    """A module's trainable parameters as one flat vector θ, in ``parameters()`` order
    (the store's weight layout), and per-point fields evaluated at any θ."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        named = list(module.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.size = sum(self.sizes)

    def get(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])

    def set(self, theta: torch.Tensor) -> None:
        with torch.no_grad():
            offset = 0
            for p in self.module.parameters():
                p.copy_(theta[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def as_dict(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(theta, self.sizes)
        return {n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)}

    def point_fn(self, theta: torch.Tensor):
        """The field at parameters θ, as a function of one point (d,) → (k,)."""
        params = self.as_dict(theta)
        return lambda x: functional_call(self.module, params, (x[None],))[0]


# ``on_iteration(done, most)``: called by an optimiser's loop as it goes (iterations done
# so far, the most it may run); how a long step's progress is seen from outside
# (``progress.json`` through :class:`insr_hpc.rundir.ProgressNote`). Must be cheap.
IterationHook = Callable[[int, int], None]


class Optimizer:
    """Minimise one sub-problem's objective over ``module``'s parameters, in place.

    ``on_iteration`` (an :data:`IterationHook`, or None) is set by the caller around a
    ``minimize`` call and reported to as the optimiser iterates."""

    Params: type

    def __init__(self, params):
        self.params = params
        self.on_iteration: IterationHook | None = None

    def minimize(
        self, module: torch.nn.Module, problem: SubProblem, gen: torch.Generator, *, initial: bool, reducer: Reducer
    ) -> MinimizeResult:
        raise NotImplementedError
