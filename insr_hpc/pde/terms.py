"""The pieces a step objective is made of, shared by cases, integrators and optimisers.

Everything here is *per sample*: a field is a function of one point ``x`` (d,) → (k,),
and a residual or energy density is computed for one sample. Batches come from
``torch.func.vmap`` over samples, so the same definition serves every optimiser:
Adam differentiates the batched mean square, Gauss–Newton takes the per-sample
Jacobian ``vmap(jacrev(·))`` (cost ∝ samples × parameters), and packed sweeps vmap over
runs. Spatial derivatives are forward-mode (``insr_hpc.ops.grad_at`` …), which
composes with all of those transforms.

A sub-problem's objective is a sum of terms:

* :class:`Residual` — ``weight · mean_i ‖r(field, sᵢ)‖²`` (least squares); its scaled
  row vector ``√(weight/N) · r`` has squared norm equal to that term, which is what
  Gauss–Newton minimises;
* :class:`Energy` — ``weight · mean_i e(field, sᵢ)`` (a Monte-Carlo integral of an
  energy density: not a sum of squares, minimised by Newton or L-BFGS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import vmap

from insr_hpc.ops import batch_mode, with_jacobian

PointFn = Callable[[torch.Tensor], torch.Tensor]  # one point (d,) → values (k,)
Batch = Any  # a tensor (N, …) or a tuple of tensors with a leading sample dimension


@dataclass
class Term:
    """First-order evolution ∂u/∂t = F(u): ``rhs(field, x)`` is F(u) at one point x (d,),
    (k,), for any point field (written with the point operators of insr_hpc.ops)."""

    rhs: Callable[[PointFn, torch.Tensor], torch.Tensor]


@dataclass
class PotentialTerm:
    """What a variational (incremental-potential) case exposes.

    ``density(phi, X)``: potential energy per unit reference volume (scalar) at one
    point X (d,) for the per-point deformation map ``phi`` (d,) → (d,). ``mass(X)``:
    mass density ρ (scalar). ``measure``: volume of the reference domain, so measure ·
    mean over uniform samples is the integral. ``local(x, F, X)``, optional: the same
    density from φ(X), ∇φ(X) and X (every hyperelastic density is local); given it, the
    integrator evaluates φ and its gradient once for inertia and potential together."""

    density: Callable[[PointFn, torch.Tensor], torch.Tensor]
    mass: Callable[[torch.Tensor], torch.Tensor]
    measure: float
    local: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None


@dataclass
class Residual:
    """``weight · mean_i ‖fn(field, sᵢ)‖²`` over the samples ``sample(gen)`` draws."""

    name: str
    sample: Callable[[torch.Generator], Batch]
    fn: Callable[[PointFn, Any], torch.Tensor]  # (field, one sample) → (m,)
    weight: float = 1.0


@dataclass
class Energy:
    """``weight · mean_i fn(field, sᵢ)``: an integral estimated by Monte Carlo.

    Optionally the density split as ``fn(field, s) == outer(inner(field, s), s)``: a few
    local quantities y = ``inner`` (m,) of the field at the sample (φ and ∇φ) and an
    ``outer`` energy of them, whose Hessian in y (m × m per sample) gives the
    generalised Gauss–Newton curvature Jᵀ ∇²outer J that Newton–CG uses."""

    name: str
    sample: Callable[[torch.Generator], Batch]
    fn: Callable[[PointFn, Any], torch.Tensor]  # (field, one sample) → scalar
    weight: float = 1.0
    inner: Callable[[PointFn, Any], torch.Tensor] | None = None  # (field, one sample) → (m,)
    outer: Callable[[torch.Tensor, Any], torch.Tensor] | None = None  # (y (m,), one sample) → scalar


def module_point_fn(module: torch.nn.Module) -> PointFn:
    """A module (N, d) → (N, k) as a field of one point (d,) → (k,) that also takes a
    batch (N, d) → (N, k) (its own parameters, autograd-tracked). A module with a
    ``value_and_jacobian`` method (SIREN) gives batched spatial derivatives by forward
    propagation (:func:`insr_hpc.ops.with_jacobian`)."""
    fn = lambda x: module(x[None])[0]  # noqa: E731
    forward = getattr(module, "value_and_jacobian", None)
    return with_jacobian(fn, forward) if forward is not None else fn


def batch_size(batch: Batch) -> int:
    return (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]


def draw(terms: Sequence[Residual | Energy], gen: torch.Generator) -> list[Batch]:
    """One batch per term, in order (the generator advances term by term)."""
    return [t.sample(gen) for t in terms]


def _batched(term, field: PointFn, batch: Batch, per_point: bool = False) -> torch.Tensor:
    """The term on every sample of ``batch``: (N, m) residuals or (N,) energies.

    By default the term's code runs once on the whole batch in ``batch_mode`` (reverse-
    mode autograd for spatial derivatives: what Adam and L-BFGS differentiate); with
    ``per_point`` it is vmapped over samples (what torch.func transforms need)."""
    if not per_point:
        with batch_mode():
            return term.fn(field, tuple(batch) if isinstance(batch, (tuple, list)) else batch)
    if isinstance(batch, (tuple, list)):
        return vmap(lambda *s: term.fn(field, s))(*batch)
    return vmap(lambda s: term.fn(field, s))(batch)


def residual_rows(terms, field: PointFn, batches, world_size: int = 1, per_point: bool = False) -> torch.Tensor:
    """The scaled residual vector of the least-squares terms, (M,): its squared norm is
    their part of the objective. ``world_size``: data-parallel ranks each holding a
    slice of the global batch (rows are scaled by the global count, so summing ranks'
    normal equations gives the global ones)."""
    rows = []
    for term, batch in zip(terms, batches, strict=True):
        if not isinstance(term, Residual):
            continue
        n = batch_size(batch) * world_size
        rows.append(_batched(term, field, batch, per_point).reshape(-1) * (term.weight / n) ** 0.5)
    return torch.cat(rows) if rows else torch.zeros(0)


def energy_value(terms, field: PointFn, batches, per_point: bool = False) -> torch.Tensor:
    """The energy terms' part of the objective (scalar; this rank's samples)."""
    total = None
    for term, batch in zip(terms, batches, strict=True):
        if isinstance(term, Energy):
            part = term.weight * _batched(term, field, batch, per_point).mean()
            total = part if total is None else total + part
    return total


def objective(terms, field: PointFn, batches, per_point: bool = False) -> torch.Tensor:
    """The scalar objective on this rank's samples: Σ residual terms + Σ energy terms
    (``per_point``: vmapped over samples, for torch.func transforms; see :func:`_batched`)."""
    total = None
    for term, batch in zip(terms, batches, strict=True):
        values = _batched(term, field, batch, per_point)
        if isinstance(term, Residual):
            part = term.weight * values.reshape(values.shape[0], -1).pow(2).sum(1).mean()
        else:
            part = term.weight * values.mean()
        total = part if total is None else total + part
    return total


def is_least_squares(terms) -> bool:
    return all(isinstance(t, Residual) for t in terms)


# Energy densities of elastodynamics, for one point (…, d, d) / (…, d), d = 2 or 3: the
# same code runs batched for Adam and per point under vmap for Newton's curvature.


def determinant(F: torch.Tensor) -> torch.Tensor:
    """det F for F (…, d, d), d = 2 or 3, written out (vmap- and double-backward-safe)."""
    if F.shape[-1] == 2:
        return F[..., 0, 0] * F[..., 1, 1] - F[..., 0, 1] * F[..., 1, 0]
    a, b, c = F[..., 0, :], F[..., 1, :], F[..., 2, :]
    return (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)


def signed_singular_sum(F: torch.Tensor, iterations: int = 16) -> torch.Tensor:
    """Σσₖ with the smallest singular value negated when det F < 0, i.e. tr(RᵀF) for the
    rotation R of the polar decomposition F = RS (what ARAP measures), for F (…, d, d).

    2D: √((F₀₀ + F₁₁)² + (F₁₀ − F₀₁)²). 3D, without an SVD (whose derivative is undefined
    at repeated singular values, e.g. at rest): s = Σσ is the largest root of
    ((s² − I₁)/2)² − 2Js − I₂ = 0 (I₁ = |F|², I₂ the second invariant of FᵀF, J = det F:
    from I₁ = s² − 2e₂, I₂ = e₂² − 2sJ with e₂ = Σ_{j<k} σⱼσₖ), found by Newton from
    √(3I₁) ≥ s; 16 iterations reach float64 rounding for stretches up to ~4. Smooth at
    F = I (a simple root), so Newton's and Gauss–Newton's second derivatives exist."""
    if F.shape[-1] == 2:
        return torch.sqrt((F[..., 0, 0] + F[..., 1, 1]) ** 2 + (F[..., 1, 0] - F[..., 0, 1]) ** 2)
    I1 = (F**2).sum((-2, -1))
    C = F.transpose(-1, -2) @ F
    I2 = 0.5 * (I1**2 - (C**2).sum((-2, -1)))
    J = determinant(F)
    s = torch.sqrt(3 * I1)
    for _ in range(iterations):
        g = ((s * s - I1) / 2) ** 2 - 2 * J * s - I2
        s = s - g / (s * (s * s - I1) - 2 * J)
    return s


def material_density(kind: str, F: torch.Tensor, mu, lam) -> torch.Tensor:
    """Ψ(F) per unit reference volume for F (…, d, d) → (…):

    * ``neo_hookean``: μ/2(|F|² − d) − μ(J − 1) + λ/2(J − 1)² (log-free, defined for J ≤ 0);
    * ``arap``: μ Σ(σₖ − 1)² = μ(|F|² − 2 tr(RᵀF) + d) (as rigid as possible);
    * ``arap_volume``: ARAP + λ/2(J − 1)² (volume preservation)."""
    d = F.shape[-1]
    J = determinant(F)
    if kind == "neo_hookean":
        return 0.5 * mu * ((F**2).sum((-2, -1)) - d) - mu * (J - 1) + 0.5 * lam * (J - 1) ** 2
    out = mu * ((F**2).sum((-2, -1)) - 2 * signed_singular_sum(F) + d)
    if kind == "arap_volume":
        out = out + 0.5 * lam * (J - 1) ** 2
    return out


def plane_penalty(x: torch.Tensor, ground: float, stiffness: float) -> torch.Tensor:
    """k/2 · max(0, ground − x_d)²: contact with the plane x_d = ground (d the last axis, "down")."""
    return 0.5 * stiffness * torch.relu(ground - x[..., -1]) ** 2


def sphere_penalty(x: torch.Tensor, centre, radius: float, stiffness: float) -> torch.Tensor:
    """k/2 · max(0, r − |x − c|)²: contact with a sphere (a circle in 2D)."""
    c = torch.as_tensor(centre, dtype=x.dtype, device=x.device)
    dist = torch.sqrt(((x - c) ** 2).sum(-1) + 1e-30)
    return 0.5 * stiffness * torch.relu(radius - dist) ** 2
