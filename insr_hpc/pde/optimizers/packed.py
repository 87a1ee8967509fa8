"""Adam and Levenberg–Marquardt for a *pack*: the same sub-problem of k independent runs
solved together, every tensor operation batched over the runs with ``torch.func.vmap``.

Each run keeps what it would have alone: its own parameters, samples (its own
generator, drawn at the same points of its sequence), optimiser state (Adam moments
and step count, learning-rate schedule, LM damping λ), stopping rule and best iterate.
The decisions are taken per run, exactly as :func:`~insr_hpc.pde.optimizers.adam.adam_loop`
and :func:`~insr_hpc.pde.optimizers.gauss_newton.levenberg_marquardt` take them; only
the arithmetic is batched, so a packed run equals the same run made alone up to
floating-point rounding (batched vs single GEMMs, per-sample vs batch-mode spatial
derivatives). A run that has stopped drops out of the batch; one still in it after
``max_iters`` iterations stopped at its cap (``MinimizeResult.capped``), as alone.

The run-specific inputs of the objective (history weights, swept problem values, Δt)
travel as a per-run pytree ``aux``; ``terms_of(aux_j)`` rebuilds run j's terms inside
the vmap (see :mod:`insr_hpc.pde.pack`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import grad_and_value, vmap

from insr_hpc.pde.optimizers.base import MinimizeResult, ParamVector
from insr_hpc.pde.optimizers.gauss_newton import _cg, residual_jacobian
from insr_hpc.pde.terms import objective, residual_rows

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the lone path uses them
ADAM_EPS = 1e-8


@dataclass
class PackedProblem:
    """One sub-problem of k runs as pure functions of (θ_j, aux_j, batches_j)."""

    vec: ParamVector  # the optimised field's parameter layout (shared by the pack)
    thetas: list[torch.Tensor]  # per run: starting parameters (P,)
    aux: dict[str, torch.Tensor]  # per-run inputs, stacked along dim 0 (k, …)
    terms_of: Callable[[dict[str, torch.Tensor]], list]  # aux_j → run j's terms (inside the vmap)
    draws: list[Callable[[], list]]  # per run: a fresh batch per term (its own generator)

    @property
    def k(self) -> int:
        return len(self.thetas)


def _take(aux: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[idx] for key, value in aux.items()}


def _stack(batches: list[list[Any]]) -> list[Any]:
    """Per-run batch lists (one entry per term, a tensor or a tuple) → one list of
    tensors/tuples with a leading run dimension."""
    out = []
    for parts in zip(*batches, strict=True):
        if isinstance(parts[0], (tuple, list)):
            out.append(tuple(torch.stack(p) for p in zip(*parts, strict=True)))
        else:
            out.append(torch.stack(parts))
    return out


def _loss_fn(prob: PackedProblem):
    def loss(theta, aux, batches):
        return objective(prob.terms_of(aux), prob.vec.point_fn(theta), batches, per_point=True)

    return loss


# Adam --------------------------------------------------------------------------------


def packed_adam(prob: PackedProblem, *, lrs, max_iters, tol, rtol, window, patience=1, grad_clip=0.0, plateau=0,
                plateau_factor=0.1, min_lr=0.0, keep_best=False, on_iteration=None, report_offset=0,
                report_of=None) -> tuple[torch.Tensor, list[MinimizeResult]]:
    """:func:`~insr_hpc.pde.optimizers.adam.adam_loop` for every run of the pack.
    Returns the final parameters (k, P) and each run's result. ``on_iteration`` as
    ``adam_loop``'s (the pack's iterations: every run still in it has done as many)."""
    k = prob.k
    theta = torch.stack([t.detach() for t in prob.thetas])
    m1, m2 = torch.zeros_like(theta), torch.zeros_like(theta)
    steps = torch.zeros(k, dtype=torch.float64)
    lr = [float(x) for x in lrs]
    scheds = []
    for j in range(k):  # torch's own plateau rule, one per run (on a stand-in optimiser holding the rate)
        if plateau > 0:
            holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr[j])
            scheds.append(torch.optim.lr_scheduler.ReduceLROnPlateau(
                holder, mode="min", factor=plateau_factor, patience=plateau, eps=0.0))
        else:
            scheds.append(None)
    losses: list[list[float]] = [[] for _ in range(k)]
    best_window, stale = [float("inf")] * k, [0] * k
    best_loss, best_params = [float("inf")] * k, [None] * k
    active = list(range(k))
    step_fn = vmap(grad_and_value(_loss_fn(prob)))
    b1, b2 = ADAM_BETAS
    for it in range(1, max_iters + 1):
        if not active:
            break
        if on_iteration is not None and it > 1:
            on_iteration(report_offset + it - 1, report_of or max_iters)
        idx = torch.tensor(active)
        batches = _stack([prob.draws[j]() for j in active])
        grads, values = step_fn(theta[idx], _take(prob.aux, idx), batches)
        grads = grads.detach()
        vals = [float(v) for v in values.detach()]
        for i, j in enumerate(active):
            if keep_best and vals[i] < best_loss[j]:  # the parameters before this update
                best_loss[j], best_params[j] = vals[i], theta[j].clone()
        if grad_clip > 0:  # clip_grad_norm_ over all of a run's parameters
            norms = grads.norm(dim=1, keepdim=True)
            grads = grads * (grad_clip / (norms + 1e-6)).clamp(max=1.0)
        steps[idx] += 1
        m1[idx] = m1[idx].lerp(grads, 1 - b1)
        m2[idx] = m2[idx] * b2 + (1 - b2) * grads * grads
        # bias corrections in float64, as torch computes them (Python floats), on the host;
        # then to θ's dtype and device
        rates = torch.tensor([lr[j] for j in active], dtype=torch.float64)
        step_size = (rates / (1 - b1 ** steps[idx])).to(theta)[:, None]
        bc2_sqrt = ((1 - b2 ** steps[idx]) ** 0.5).to(theta)[:, None]
        denom = m2[idx].sqrt() / bc2_sqrt + ADAM_EPS
        theta[idx] = theta[idx] - step_size * m1[idx] / denom
        still = []
        for i, j in enumerate(active):
            value = vals[i]
            losses[j].append(value)
            if 0 <= value < tol:
                continue
            if scheds[j] is not None:
                scheds[j].step(value)
                lr[j] = scheds[j].optimizer.param_groups[0]["lr"]
                if lr[j] < min_lr:
                    continue
            if rtol > 0 and it % window == 0:
                cur = sum(losses[j][-window:]) / window
                if best_window[j] == float("inf") or cur < best_window[j] - rtol * abs(best_window[j]):
                    best_window[j], stale[j] = cur, 0
                else:
                    stale[j] += 1
                    if stale[j] >= patience:
                        continue
            still.append(j)
        active = still
    capped = set(active)  # still going after max_iters: no stopping rule fired
    finals = [ls[-1] if ls else float("nan") for ls in losses]
    picks = [j for j in range(k) if keep_best and best_params[j] is not None]
    if picks:  # the better of the last and the best iterate, on one fresh batch per run
        idx = torch.tensor(picks)
        batches = _stack([prob.draws[j]() for j in picks])
        aux = _take(prob.aux, idx)
        evaluate = vmap(_loss_fn(prob))
        with torch.no_grad():
            last = evaluate(theta[idx], aux, batches)
            best = evaluate(torch.stack([best_params[j] for j in picks]), aux, batches)
        for i, j in enumerate(picks):
            if float(best[i]) <= float(last[i]):
                theta[j] = best_params[j]
                finals[j] = float(best[i])
            else:
                finals[j] = float(last[i])
    return theta, [MinimizeResult(len(losses[j]), finals[j], losses[j], capped=j in capped) for j in range(k)]


# Levenberg–Marquardt -----------------------------------------------------------------


def packed_levenberg_marquardt(prob: PackedProblem, *, max_iters, rtol, params,
                               report=None) -> tuple[torch.Tensor, list[MinimizeResult]]:
    """:func:`~insr_hpc.pde.optimizers.gauss_newton.levenberg_marquardt` for every run:
    one batched Jacobian, JᵀJ and Cholesky per iteration, λ and acceptance per run."""
    k = prob.k
    theta = torch.stack([t.detach() for t in prob.thetas])
    dense = params.linear_solver == "cholesky" or (params.linear_solver == "auto" and prob.vec.size <= params.max_dense)
    lam = [params.damping] * k
    losses: list[list[float]] = [[] for _ in range(k)]
    final = [float("nan")] * k
    iterations = [0] * k
    batches = [prob.draws[j]() for j in range(k)]
    jac = vmap(lambda th, aux, b: residual_jacobian(prob.vec, prob.terms_of(aux), th, b, 1, params.chunk))
    rows = vmap(lambda th, aux, b: residual_rows(prob.terms_of(aux), prob.vec.point_fn(th), b, 1, per_point=True))
    active = list(range(k))
    for it in range(max_iters):
        if not active:
            break
        if report is not None:  # before each iteration: the iterations done (progress)
            report(it)
        if it > 0 and params.resample == "iteration":
            for j in active:
                batches[j] = prob.draws[j]()
        idx = torch.tensor(active)
        aux = _take(prob.aux, idx)
        stacked = _stack([batches[j] for j in active])
        for j in active:
            iterations[j] += 1
        r, J = jac(theta[idx], aux, stacked)
        r, J = r.detach(), J.detach()
        f0 = (r.double() ** 2).sum(1)
        g = (J.double().transpose(1, 2) @ r.double()[..., None])[..., 0]
        if dense:
            Jg = J.double() if params.gram_dtype == "float64" else J
            A = (Jg.transpose(1, 2) @ Jg).double()
            diag = torch.diagonal(A, dim1=1, dim2=2)
            floor = 1e-12 * diag.max(dim=1, keepdim=True).values + 1e-30
            diag = torch.maximum(diag, floor)
        undecided = [i for i, j in enumerate(active) if not float(f0[i]) <= params.tol]
        trial_f = {}
        for i, j in enumerate(active):
            if i not in undecided:  # already below tol: stop here (as alone)
                final[j] = float(f0[i])
                losses[j].append(final[j])
        accepted: dict[int, float] = {}
        for _ in range(12):
            if not undecided:
                break
            u = torch.tensor(undecided)
            lams = torch.tensor([lam[active[i]] for i in undecided], dtype=torch.float64, device=g.device)
            if dense:
                chol, info = torch.linalg.cholesky_ex(A[u] + lams[:, None, None] * torch.diag_embed(diag[u]))
                ok = [n for n in range(len(undecided)) if int(info[n]) == 0]
                for n in range(len(undecided)):
                    if int(info[n]) != 0:
                        lam[active[undecided[n]]] *= 4
                if not ok:
                    continue
                ok_t = torch.tensor(ok)
                delta = -torch.cholesky_solve(g[u][ok_t][..., None], chol[ok_t])[..., 0]
            else:  # conjugate gradients on J itself, run by run
                ok = list(range(len(undecided)))
                ok_t = torch.tensor(ok)
                delta = torch.stack([
                    -_cg(lambda v, Ji=J[i]: (Ji.T @ (Ji @ v.to(Ji.dtype))).double() + lam[active[i]] * v, g[i],
                         params.cg_iters)
                    for i in undecided
                ])
            who = [undecided[n] for n in ok]
            w = torch.tensor(who)
            trial = theta[idx[w]] + delta.to(theta.dtype)
            with torch.no_grad():
                f1 = (rows(trial, _take(aux, w), [_take_batch(b, w) for b in stacked]).double() ** 2).sum(1)
            for n, i in enumerate(who):
                j = active[i]
                v = float(f1[n])
                if v == v and v < float(f0[i]):
                    accepted[i] = v
                    trial_f[i] = trial[n]
                    lam[j] = max(lam[j] / 3, 1e-12)
                    undecided.remove(i)
                else:
                    lam[j] *= 4
        still = []
        for i, j in enumerate(active):
            if float(f0[i]) <= params.tol:
                continue
            if i not in accepted:
                final[j] = float(f0[i])
                losses[j].append(final[j])
                continue
            theta[j] = trial_f[i]
            f1v, f0v = accepted[i], float(f0[i])
            final[j] = f1v
            losses[j].append(f1v)
            stalled = len(losses[j]) > 1 and f1v > (1 - rtol) * losses[j][-2]
            if f1v <= params.tol or (f0v - f1v) < rtol * f0v or stalled:
                continue
            still.append(j)
        active = still
    capped = set(active)  # still going after max_iters: no stopping rule fired
    return theta, [MinimizeResult(iterations[j], final[j], losses[j], capped=j in capped) for j in range(k)]


def _take_batch(batch, idx: torch.Tensor):
    if isinstance(batch, tuple):
        return tuple(b[idx] for b in batch)
    return batch[idx]


__all__ = ["PackedProblem", "packed_adam", "packed_levenberg_marquardt"]
